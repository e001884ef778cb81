"""Soak: both collectors and every scheduled step against the simulator, for a duration, on SQLite and PostgreSQL.

    python -m benchmarks.soak --duration 60 --backend both    # CI (.ci/run): 1 minute per backend, 2 in all
    python -m benchmarks.soak --duration 1800 --backend sqlite  # the documented 30-minute run

The two collectors run as long-lived `kbtc` processes for the whole duration. Every step runs as a `kbtc`
process on its own schedule: the production cadences compressed so each runs several times. As with a Prefect
deployment at `concurrency_limit: 1, CANCEL_NEW`, a run that is still going when it falls due again skips that
turn. Measured per backend:

- failed runs: step or collector processes that exited non-zero (target 0);
- "database is locked": occurrences in any output or log line (target 0);
- RSS growth of each collector from the end of the warm-up to the end of the run, in % (limit 10).

The exit status is 1 when any backend misses a target (a failed run, any "database is locked", an RSS growth
above the limit or not measured); each reason is printed, with the end of every failed run's output, so CI fails
and says why.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

from benchmarks.common import bench_line
from kbtc.sim.markets import CatalogConfig
from kbtc.sim.simulator import SimConfig, Simulator

RSS_LIMIT_PCT = 10.0
COLLECTORS = ("kalshi", "coinbase")
# (name, arguments, period in seconds)
SCHEDULE: list[tuple[str, list[str], float]] = [
    ("refresh-markets", ["refresh-markets"], 60),
    ("poll-quotes", ["poll-quotes", "--seconds", "25", "--interval", "5"], 30),
    ("edges", ["run-live-edges", "--duration-seconds", "25", "--interval-seconds", "10"], 30),
    ("opportunities", ["run-opportunity-loop", "--once", "--emit-passes"], 10),
    ("settlements", ["refresh-settlements"], 60),
    ("settle-ledger", ["settle-ledger"], 60),
    ("score", ["score-snapshots"], 60),
    ("report", ["report-model-performance", "--no-files"], 120),
    ("backfill-repair", ["backfill-spot", "--repair", "--hours", "1"], 120),
    ("prune", ["prune", "--older-than-days", "30"], 120),
    ("health", ["health"], 60),
]
LOCKED = "database is locked"
FAILURE_OUTPUT_CHARS = 3000  # enough for a traceback or the warnings that explain an exit status
STOP_TIMEOUT_S = 120.0


@dataclass
class SoakResult:
    """What one backend's soak measured."""

    runs: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    locked: int = 0
    rss_growth_pct: dict[str, float] = field(default_factory=dict)


def _rss_kib(pid: int) -> int | None:
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def _failure(name: str, code: int | None, output: Path) -> str:
    """A failed run and the end of its own output file (one file per run)."""
    text = output.read_text(errors="replace").strip()
    tail = text if len(text) <= FAILURE_OUTPUT_CHARS else "…" + text[-FAILURE_OUTPUT_CHARS:]
    status = "did not finish" if code is None else f"exited {code}"
    return f"{name} {status} ({output.name}):\n    " + tail.replace("\n", "\n    ")


def _spawn(args: list[str], env: dict[str, str], cwd: Path, out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as sink:
        return subprocess.Popen([sys.executable, "-m", "kbtc.cli", *args], env=env, cwd=cwd,
                                stdout=sink, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> int | None:
    """Wait for a run to end; kill one that overstays `STOP_TIMEOUT_S` and return None for it."""
    try:
        return proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def soak(duration_s: float, database_url: str, work: Path, env_base: dict[str, str]) -> SoakResult:
    """Run the collectors and the schedule for `duration_s` against one database."""
    env = env_base | {"DATABASE_URL": database_url, "DATA_DIR": str(work / "data"),
                      "LOG_PATH": str(work / "logs" / "app.jsonl")}
    result = SoakResult()
    logs = work / "out"
    logs.mkdir(parents=True, exist_ok=True)
    setup = subprocess.run([sys.executable, "-m", "kbtc.cli", "db", "upgrade"], env=env, cwd=work,
                           capture_output=True, text=True, check=False)
    if setup.returncode != 0:
        raise SystemExit(f"db upgrade failed: {setup.stdout}{setup.stderr}")
    subprocess.run([sys.executable, "-m", "kbtc.cli", "refresh-markets"], env=env, cwd=work,
                   capture_output=True, check=False)
    seconds = str(int(duration_s))
    commands = {"kalshi": ["collect-kalshi", "--seconds", seconds],
                "coinbase": ["collect", "--coinbase", "--seconds", seconds]}
    collectors = {name: _spawn(commands[name], env, work, logs / f"collector-{name}.txt") for name in COLLECTORS}
    samples: dict[str, list[tuple[float, int]]] = {name: [] for name in collectors}
    running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    run_number = count(1)
    next_due = {name: 0.0 for name, _, _ in SCHEDULE}
    started = time.monotonic()
    last_sample = 0.0
    while time.monotonic() - started < duration_s:
        now = time.monotonic() - started
        for name, args, period in SCHEDULE:
            if now < next_due[name]:
                continue
            next_due[name] = now + period
            previous = running.get(name)
            if previous is not None and previous[0].poll() is None:
                result.skipped[name] = result.skipped.get(name, 0) + 1  # CANCEL_NEW
                continue
            if previous is not None and previous[0].returncode != 0:
                result.failures.append(_failure(name, previous[0].returncode, previous[1]))
            output = logs / f"{name}-{next(run_number):04d}.txt"
            running[name] = (_spawn(args, env, work, output), output)
            result.runs[name] = result.runs.get(name, 0) + 1
        if now - last_sample >= 5:
            last_sample = now
            for name, proc in collectors.items():
                rss = _rss_kib(proc.pid)
                if rss is not None:
                    samples[name].append((now, rss))
        time.sleep(0.2)
    for name, (proc, output) in running.items():
        code = _stop(proc)
        if code != 0:
            result.failures.append(_failure(name, code, output))
    for name, proc in collectors.items():
        code = _stop(proc)
        if code != 0:
            result.failures.append(_failure(f"collector {name}", code, logs / f"collector-{name}.txt"))
    texts = [p.read_text(errors="replace") for p in logs.glob("*.txt")]
    log_file = work / "logs" / "app.jsonl"
    if log_file.exists():
        texts.append(log_file.read_text(errors="replace"))
    result.locked = sum(text.count(LOCKED) for text in texts)
    warmup_s = min(60.0, duration_s * 0.25)
    for name, points in samples.items():
        baseline = [rss for t, rss in points if warmup_s <= t < warmup_s + 15]
        final = [rss for _, rss in points[-3:]]
        if baseline and final:
            base = statistics.median(baseline)
            result.rss_growth_pct[name] = 100.0 * (statistics.median(final) - base) / base
    return result


class _SimThread:
    """The simulator on loopback in a background thread."""

    def __init__(self, config: SimConfig) -> None:
        self.sim = Simulator(config)
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        async with self.sim:
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Simulator:
        self._thread.start()
        if not self._ready.wait(60):
            raise SystemExit("the simulator did not start")
        return self.sim

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def missed_targets(backend: str, result: SoakResult) -> list[str]:
    """Why this backend's soak fails its targets (empty when it meets them all)."""
    reasons = [f"{backend}: {len(result.failures)} failed run(s)"] if result.failures else []
    if result.locked:
        reasons.append(f"{backend}: '{LOCKED}' {result.locked} time(s)")
    for name in COLLECTORS:
        growth = result.rss_growth_pct.get(name)
        if growth is None:
            reasons.append(f"{backend}: RSS growth of the {name} collector not measured")
        elif growth > RSS_LIMIT_PCT:
            reasons.append(f"{backend}: RSS of the {name} collector grew {growth:.1f} % (limit {RSS_LIMIT_PCT:g} %)")
    return reasons


def _postgres_database(admin_url: str) -> tuple[str, str]:
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    name = f"kbtc_soak_{uuid.uuid4().hex[:10]}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin.set(database=name).render_as_string(hide_password=False), conninfo


def main() -> None:
    """Run the soak on the chosen backends, print BENCH lines, and exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds per backend")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "KBTC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    env_base = {k: v for k, v in os.environ.items()
                if not k.startswith(("KALSHI_", "COINBASE_", "DB_PATH", "DATABASE_URL", "LOG_", "COLLECTOR_"))}
    env_base |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "KALSHI_SERIES": "KXBTC15M,KXBTCD,KXBTC"}
    catalog = CatalogConfig(window_minutes=2, event_minutes=10, history_s=6 * 3600, historical_cutoff_s=1200)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    missed: list[str] = []
    with _SimThread(SimConfig(seed=3, catalog=catalog)) as sim, tempfile.TemporaryDirectory() as tmp:
        env_base |= sim.env()
        for backend in backends:
            work = Path(tmp) / backend
            work.mkdir()
            drop: str | None = None
            if backend == "sqlite":
                url = f"sqlite:///{work / 'data' / 'kalshi.sqlite'}"
                (work / "data").mkdir()
            else:
                url, drop = _postgres_database(args.postgres_url)
            try:
                result = soak(args.duration, url, work, env_base)
            finally:
                if drop is not None:
                    import psycopg

                    with psycopg.connect(drop, autocommit=True) as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
            runs = sum(result.runs.values())
            print(f"soak {backend} {args.duration:.0f} s: {runs} step runs {result.runs}, "
                  f"skipped (still running) {result.skipped}, failures {len(result.failures)}, "
                  f"'{LOCKED}' {result.locked}, RSS growth % {result.rss_growth_pct}")
            for failure in result.failures:
                print(f"  failed: {failure}")
            print(bench_line(f"soak_{backend}_failed_runs", len(result.failures), "runs", 0.0,
                             higher_is_better=False))
            print(bench_line(f"soak_{backend}_database_locked", result.locked, "occurrences", 0.0,
                             higher_is_better=False))
            for name, growth in sorted(result.rss_growth_pct.items()):
                # A shrinking RSS counts as no growth (the raw number is in the summary line above).
                print(bench_line(f"soak_{backend}_rss_growth_{name}", max(growth, 0.0), "%", RSS_LIMIT_PCT,
                                 higher_is_better=False))
            missed += missed_targets(backend, result)
    if missed:
        print("soak FAILED:\n" + "\n".join(f"  {reason}" for reason in missed))
        raise SystemExit(1)
    print("soak ok: no failed run, no 'database is locked', RSS growth within the limit")


if __name__ == "__main__":
    main()
