"""Security: secrets never leave the process; TLS is never turned off; SQL values are always bound.

The end-to-end test runs every step that touches Kalshi as a real `kbtc` process against a simulator that
requires signed requests (so the key is really used), at DEBUG level, then searches everything the run left
behind — stdout, stderr, the JSONL log, the SQLite file and its WAL, the tapes (decompressed), exports and
report files — for the key id, the PEM markers and pieces of the key body.
"""

from __future__ import annotations

import ast
import asyncio
import gzip
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simthread import SERIES, fast_wall_config, kbtc, kbtc_env, simulator_thread

from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import read_frame
from kbtc.pipeline.recording import record_rejects
from kbtc.sim.kalshi.auth import ApiKey
from kbtc.venues.records import RejectRecord

# Multi-process and timing-sensitive: run one at a time, in one worker (tests/conftest.py).
pytestmark = pytest.mark.serial

ROOT = Path(__file__).parents[2]
SOURCES = sorted([*(ROOT / "kbtc").rglob("*.py"), *(ROOT / "flows").rglob("*.py")])


def _key() -> tuple[str, bytes]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return str(uuid.uuid4()), pem


def _needles(key_id: str, pem: bytes) -> dict[str, bytes]:
    body = pem.decode().splitlines()[1:-1]
    needles = {"key id": key_id.encode(), "PEM marker": b"PRIVATE KEY", "PEM header": b"-----BEGIN"}
    for i in (0, len(body) // 2, len(body) - 2):
        needles[f"PEM body line {i}"] = body[i][8:56].encode()  # also found when the PEM is JSON-escaped
    return needles


def _readable(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data


@pytest.mark.serial(alone=False)  # commands and flows whose outputs are searched: no timing window to miss
@pytest.mark.slow
def test_no_secret_in_any_output(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    key_id, pem = _key()
    key_dir = tmp_path_factory.mktemp("keys")  # outside the searched tree
    key_file = key_dir / "kalshi.key"
    key_file.write_bytes(pem)
    key_file.chmod(0o600)
    work = tmp_path / "run"
    work.mkdir()
    config = fast_wall_config(api_keys=(ApiKey.from_pem(key_id, pem, entitled=True),))
    outputs: dict[str, str] = {}
    with simulator_thread(config) as sim:
        by_path = kbtc_env(sim, work, {"KALSHI_API_KEY_ID": key_id, "KALSHI_PRIVATE_KEY_PATH": str(key_file),
                                       "LOG_LEVEL": "DEBUG"})
        inline = {k: v for k, v in by_path.items() if k != "KALSHI_PRIVATE_KEY_PATH"}
        inline["KALSHI_PRIVATE_KEY_PEM"] = pem.decode()
        steps: list[tuple[list[str], dict[str, str]]] = [
            (["db", "upgrade"], by_path),
            (["config", "show"], inline),
            (["refresh-markets", "--status", "all"], by_path),
            (["poll-quotes", "--seconds", "1", "--interval", "0.5"], inline),
            (["collect-kalshi", "--seconds", "2", "--cfbenchmarks"], by_path),
            (["collect", "--coinbase", "--seconds", "1.5", "--debug"], inline),
            (["compute-edges"], inline),
            (["report-model-performance", "--output-dir", str(work / "report")], by_path),
            (["export", "--table", "quotes", "--output", str(work / "export" / "quotes.csv"), "--format", "csv"], by_path),
            # A wrong key: the venue refuses, and the error message must still not carry the secrets.
            (["poll-quotes", "--seconds", "0.5"], by_path | {"KALSHI_API_KEY_ID": key_id[::-1]}),
        ]
        for args, env in steps:
            started = time.monotonic()
            done = kbtc(args, env, work)
            outputs[" ".join(args)] = done.stdout + done.stderr
            print(f"kbtc {' '.join(args)}: exit {done.returncode}, {time.monotonic() - started:.1f} s")
        assert done.returncode == 1, "the simulator accepted a wrong key id"
    assert "connects=1" in outputs["collect-kalshi --seconds 2 --cfbenchmarks"]  # the signed stream worked
    files = [p for p in work.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert "kalshi.sqlite" in names and "app.jsonl" in names
    assert any(p.name.endswith(".jsonl.gz") for p in files), "no tape was written"
    leaks = [
        f"{what} in {where}"
        for what, needle in _needles(key_id, pem).items()
        for where, data in [*((str(p.relative_to(work)), _readable(p)) for p in files),
                            *((f"output of kbtc {cmd}", text.encode()) for cmd, text in outputs.items())]
        if needle in data
    ]
    assert not leaks, leaks
    shown = outputs["config show"]
    assert "KALSHI_API_KEY_ID" in shown and "KALSHI_PRIVATE_KEY_PEM" in shown and shown.count("********") >= 2


async def _prefect_outputs(flow_run_ids: list[Any]) -> dict[str, bytes]:
    """Everything the Prefect API holds about these flow runs: the runs, their task runs, their logs (every
    line), and every artifact; each as its JSON. (Secret blocks are left out: holding the key is their job.)"""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.objects import Artifact
    from prefect.client.schemas.sorting import LogSort, TaskRunSort

    async with get_client() as client:
        # Explicit limit and sort throughout: Prefect 3.8.8's client defaults send nulls its server rejects.
        runs = [await client.read_flow_run(run_id) for run_id in flow_run_ids]
        in_runs = FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids))
        tasks = await client.read_task_runs(flow_run_filter=in_runs, limit=200, sort=TaskRunSort.EXPECTED_START_TIME_DESC)
        logs: list[Any] = []
        while page := await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids)),
                                             limit=200, offset=len(logs), sort=LogSort.TIMESTAMP_ASC):
            logs += page
        # Every artifact: `read_artifacts` sends null filters (422), and empty filter objects join on task runs
        # (which would leave out the flow-level artifacts), so ask the endpoint directly.
        response = await client.request("POST", "/artifacts/filter",
                                        json={"limit": 200, "offset": 0, "sort": "CREATED_DESC"})
        artifacts = Artifact.model_validate_list(response.json())
    outputs = {f"flow run {r.name}": r.model_dump_json().encode() for r in runs}
    outputs |= {f"task run {t.name}": t.model_dump_json().encode() for t in tasks}
    outputs |= {f"artifact {a.key}": a.model_dump_json().encode() for a in artifacts}
    outputs["flow-run logs"] = "\n".join(log.model_dump_json() for log in logs).encode()
    return outputs


@pytest.mark.serial(alone=False)  # commands and flows whose outputs are searched: no timing window to miss
@pytest.mark.slow
def test_no_secret_in_prefect_artifacts_or_flow_run_logs(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline flow (every Kalshi REST step, signed, plus its artifacts) under the Prefect test harness,
    once with the key from the environment and once from the Secret blocks; then the flow runs, task runs,
    flow-run logs and artifacts are read back through the Prefect client and searched."""
    from prefect.blocks.system import Secret
    from prefect.testing.utilities import prefect_test_harness

    from flows.pipeline import run_pipeline

    key_id, pem = _key()
    key_file = tmp_path_factory.mktemp("keys") / "kalshi.key"
    key_file.write_bytes(pem)
    key_file.chmod(0o600)
    url = f"sqlite:///{tmp_path / 'kbtc.sqlite'}"
    upgrade_database(url)
    config = fast_wall_config(api_keys=(ApiKey.from_pem(key_id, pem, entitled=True),))
    with simulator_thread(config) as sim, prefect_test_harness(server_startup_timeout=120):
        for name, value in {**sim.env(), "DATABASE_URL": url, "DATA_DIR": str(tmp_path / "data"),
                            "LOG_PATH": str(tmp_path / "app.jsonl"), "KALSHI_SERIES": SERIES, "LOG_LEVEL": "DEBUG",
                            "KALSHI_API_KEY_ID": key_id, "KALSHI_PRIVATE_KEY_PATH": str(key_file)}.items():
            monkeypatch.setenv(name, value)
        from_env = run_pipeline(return_state=True)
        monkeypatch.delenv("KALSHI_API_KEY_ID")
        monkeypatch.delenv("KALSHI_PRIVATE_KEY_PATH")
        Secret(value=key_id).save("kalshi-api-key-id", overwrite=True)
        Secret(value=pem.decode()).save("kalshi-private-key", overwrite=True)
        from_blocks = run_pipeline(return_state=True)
        states = {"env": from_env, "Secret blocks": from_blocks}
        for source, state in states.items():
            assert state.is_completed(), f"{source}: {state}"
            # The signed requests worked (the simulator answers 401 to anything unsigned or wrongly signed).
            assert state.result()["catalog"]["markets"] > 0, source
        run_ids = [state.state_details.flow_run_id for state in states.values()]
        # Run logs reach the API in batches: wait for each run's last line.
        deadline = time.monotonic() + 30
        while True:
            outputs = asyncio.run(_prefect_outputs(run_ids))
            if outputs["flow-run logs"].count(b"cycle: ") == len(run_ids) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        block = Secret.load("kalshi-private-key").get()  # a control: the API does hold the key, in its block
    assert outputs["flow-run logs"].count(b"cycle: ") == len(run_ids)
    assert {"artifact kbtc-latest-edges", "artifact kbtc-take-opportunities", "artifact kbtc-data-health"} <= set(outputs)
    needles = _needles(key_id, pem)
    assert all(needle in block.encode() for what, needle in needles.items() if what != "key id")
    leaks = [f"{what} in {where}" for what, needle in needles.items() for where, data in outputs.items()
             if needle in data]
    assert not leaks, leaks


@pytest.mark.serial(alone=False)  # commands and flows whose outputs are searched: no timing window to miss
def test_key_file_readable_by_others_is_warned_about(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    key_id, pem = _key()
    key_file = tmp_path_factory.mktemp("keys") / "kalshi.key"
    key_file.write_bytes(pem)
    key_file.chmod(0o644)
    with simulator_thread(fast_wall_config()) as sim:
        env = kbtc_env(sim, tmp_path, {"KALSHI_API_KEY_ID": key_id, "KALSHI_PRIVATE_KEY_PATH": str(key_file)})
        kbtc(["db", "upgrade"], env, tmp_path)
        done = kbtc(["refresh-markets", "--status", "all"], env, tmp_path)
    log = (tmp_path / "logs" / "app.jsonl").read_text()
    assert "kalshi_key_file_permissions" in done.stderr + done.stdout + log
    assert key_id not in log and "PRIVATE KEY" not in log


# -- static checks over the code -------------------------------------------------------------------------

_TLS_OFF = re.compile(r"verify\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False|_create_unverified_context|"
                      r"PYTHONHTTPSVERIFY|ssl\s*=\s*False")


def test_tls_verification_is_never_disabled() -> None:
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in SOURCES
            for n, line in enumerate(p.read_text().splitlines(), 1) if _TLS_OFF.search(line)]
    assert not hits, f"TLS verification disabled at {hits}"


_SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|WHERE|PRAGMA|BEGIN|VALUES|CREATE|DROP|ALTER)\b")
# Every SQL string built at run time, and why what it interpolates is not a value. A new one must be reviewed
# (values go in as bound parameters) and added here.
REVIEWED_DYNAMIC_SQL = {
    ("kbtc/db/engine.py", "_install_sqlite_hooks"): "a module constant (busy timeout) and the BEGIN mode keyword",
    ("kbtc/db/store.py", "latest_quotes"): "generated placeholder names :t0..:tn",
    ("kbtc/db/store.py", "count_rows"): "a table name from the metadata",
    ("kbtc/db/store.py", "copy_upsert"): "table and column names from the metadata (_frame_for_write checks them)",
    ("kbtc/pipeline/backfill.py", "repair_windows"): "a constant fragment with a placeholder",
    ("kbtc/pipeline/edge_history.py", "load_history"): "constant columns, generated placeholders",
    ("kbtc/pipeline/edge_history.py", "_read_quotes"): "module constant SQL and columns, generated placeholders",
    ("kbtc/pipeline/edge_inputs.py", "load_markets"): "constant columns, generated placeholders",
    ("kbtc/pipeline/edge_inputs.py", "load_latest_quotes"): "constant columns, generated placeholders",
    ("kbtc/pipeline/edge_inputs.py", "load_latest_books"): "generated placeholders",
    ("kbtc/pipeline/edge_inputs.py", "_catalog_fingerprint"): "the constant market filter with generated placeholders",
    ("kbtc/pipeline/edge_inputs.py", "load_settled_references"): "a module constant expression (KNOWN_EXPIRATION_SQL)",
    ("kbtc/pipeline/kalshi_collector.py", "streamable_markets"): "generated placeholders and constant clauses",
    ("kbtc/pipeline/export.py", "export_table"): "table and columns checked against the metadata",
    ("kbtc/pipeline/health.py", "data_health"): "table and column names from a module constant",
    ("kbtc/pipeline/opportunities.py", "<module>"): "constant columns and the model_params join (module constants)",
    ("kbtc/pipeline/poll_quotes.py", "tracked_markets"): "generated placeholders and constant clauses",
    ("kbtc/pipeline/prune.py", "prune"): "table and column names checked against PRUNABLE",
    ("kbtc/pipeline/quote_cache.py", "<module>"): "constant columns (the quote schema)",
    ("kbtc/pipeline/spot_cache.py", "<module>"): "constant columns (the spot-tick schema)",
    ("kbtc/pipeline/report.py", "_ledger_rows"): "one of two constant clauses",
    ("kbtc/pipeline/score_snapshots.py", "_candidates"): "constant columns and the model_params join (constants)",
    ("kbtc/pipeline/score_snapshots.py", "scored_snapshots"): "constant columns and the model_params join",
}


def _dynamic_sql_sites() -> set[tuple[str, str]]:
    sites: set[tuple[str, str]] = set()
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        owner: dict[int, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for sub in ast.walk(node):
                    owner.setdefault(id(sub), node.name)
        for node in ast.walk(tree):
            literal = ""
            if isinstance(node, ast.JoinedStr):
                literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add) and \
                    isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
                literal = node.left.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format" \
                    and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str):
                literal = node.func.value.value
            if literal and _SQL.search(literal):
                sites.add((str(path.relative_to(ROOT)), owner.get(id(node), "<module>")))
    return sites


def test_sql_is_built_only_from_reviewed_identifiers() -> None:
    unreviewed = _dynamic_sql_sites() - set(REVIEWED_DYNAMIC_SQL)
    assert not unreviewed, f"SQL built with string formatting outside the reviewed sites: {sorted(unreviewed)}"


@pytest.mark.parametrize("hostile", ["x'); DROP TABLE rejects; --", "a\" OR \"1\"=\"1", "%(raw)s :raw ? $1", "\\'"])
def test_hostile_text_is_stored_verbatim(migrated_url: str, hostile: str) -> None:
    engine = make_engine(migrated_url)
    try:
        record_rejects(engine, [RejectRecord(hostile[:32], hostile, 1, hostile)])
        stored = read_frame(engine, "SELECT source, reason, raw FROM rejects WHERE reason = :r", {"r": hostile})
    finally:
        engine.dispose()
    assert stored.rows() == [(hostile[:32], hostile, hostile)]
