"""`kbtc collect` as a process: SIGTERM flushes and exits cleanly; kill -9 leaves a consistent database."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cbserver import DocServer, advanced_heartbeat, advanced_ticker, count, nth_ts, start_collector, wait_rows
from websockets.asyncio.server import ServerConnection

from kbtc.pipeline.tape import read_tape, tape_files

StartServer = Callable[..., Awaitable[DocServer]]
pytestmark = [pytest.mark.slow, pytest.mark.serial]  # multi-process kills: one at a time


def streaming(total_ticks: int, per_burst: int = 20, pause_s: float = 0.01) -> Any:
    """Every connection replays the same tick history from the start (fixed timestamps), with heartbeats."""

    async def handler(ws: ServerConnection, index: int, subs: list[dict[str, Any]]) -> None:
        seq = 0
        for i in range(total_ticks):
            await ws.send(advanced_ticker(seq, 90000.0 + i * 0.01, nth_ts(i)))
            seq += 1
            if i % per_burst == 0:
                await ws.send(advanced_heartbeat(seq, seq))
                seq += 1
                await asyncio.sleep(pause_s)
        while True:
            await ws.send(advanced_heartbeat(seq, seq))
            seq += 1
            await asyncio.sleep(0.05)

    return handler


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_flushes_and_exits_cleanly(doc_server: StartServer, tmp_path: Path, sig: signal.Signals) -> None:
    server = await doc_server(streaming(400))
    proc = await start_collector(server.url, tmp_path, "--seconds", "0")
    db = tmp_path / "kbtc.sqlite"
    await wait_rows(db, 1)
    await asyncio.sleep(1.0)  # all 400 sent by now
    proc.send_signal(sig)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
    assert "coinbase: 400 ticks" in stdout.decode()
    assert count(db, "SELECT COUNT(*) FROM spot_ticks") == 400
    assert count(db, "SELECT COUNT(*) FROM feed_events WHERE kind = 'disconnect' AND detail = 'shutdown'") == 1
    frames = list(read_tape(tape_files(tmp_path / "data" / "tape", "coinbase")))
    assert sum('"channel": "ticker"' in f.raw for f in frames) == 400


async def test_kill_9_mid_batch_then_restart_without_duplicates(doc_server: StartServer, tmp_path: Path) -> None:
    total = 1500
    server = await doc_server(streaming(total, per_burst=10, pause_s=0.01))
    db = tmp_path / "kbtc.sqlite"
    proc = await start_collector(server.url, tmp_path, "--seconds", "0")
    await wait_rows(db, 150)
    proc.kill()  # SIGKILL while ticks keep arriving: a batch is in flight or buffered
    await proc.wait()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored_before = count(db, "SELECT COUNT(*) FROM spot_ticks")
    assert 150 <= stored_before < total

    # The restart receives the whole history again: overlapping rows are ignored, missing ones are added.
    proc = await start_collector(server.url, tmp_path, "--seconds", "0")
    await wait_rows(db, total)
    proc.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
    assert count(db, "SELECT COUNT(*) FROM spot_ticks") == total
    assert count(db, "SELECT COUNT(DISTINCT venue_time_ns) FROM spot_ticks") == total
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_kalshi_collector_is_wired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from kbtc.cli import app

    monkeypatch.setenv("DB_PATH", str(tmp_path / "k.sqlite"))
    monkeypatch.setenv("LOG_PATH", str(tmp_path / "app.jsonl"))
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KALSHI_WS_URL", "ws://127.0.0.1:1/trade-api/ws/v2")  # refused: reconnects until stop
    result = CliRunner().invoke(app, ["collect", "--kalshi", "--seconds", "1"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "kalshi: CollectSummary(" in result.output and "connects=0" in result.output


def test_collect_without_a_stream_only_prepares_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from kbtc.cli import app

    monkeypatch.setenv("DB_PATH", str(tmp_path / "fresh.sqlite"))
    monkeypatch.setenv("LOG_PATH", str(tmp_path / "app.jsonl"))
    result = CliRunner().invoke(app, ["collect"])
    assert result.exit_code == 0, result.output
    assert "nothing to collect" in result.output
    assert count(tmp_path / "fresh.sqlite", "SELECT COUNT(*) FROM spot_ticks") == 0
    assert count(tmp_path / "fresh.sqlite", "SELECT COUNT(*) FROM alembic_version") == 1
