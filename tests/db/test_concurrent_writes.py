"""Several processes writing one SQLite file at once: every row lands, no "database is locked"."""

from __future__ import annotations

import multiprocessing as mp

import polars as pl
import pytest

from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import count_rows, upsert

# Multi-process and timing-sensitive: run one at a time, in one worker (tests/conftest.py).
pytestmark = pytest.mark.serial

WRITERS = 4
ROWS_PER_WRITER = 10_000


def _write(url: str, writer: int, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        engine = make_engine(url)
        n = ROWS_PER_WRITER
        frame = pl.DataFrame(
            {
                "product_id": "BTC-USD",
                "source": f"writer{writer}",
                "tick_ts": [1_700_000_000_000 + i for i in range(n)],
                "venue_time_ns": [1_700_000_000_000_000_000 + i for i in range(n)],
                "received_ts": [1_700_000_000_000 + i for i in range(n)],
                "price": [95_000.0 + i * 0.01 for i in range(n)],
            }
        )
        # Small batches: many short write transactions interleaving with the other processes.
        upsert(engine, "spot_ticks", frame, batch_rows=250)
        engine.dispose()
        queue.put((writer, None))
    except Exception as exc:
        queue.put((writer, repr(exc)))


@pytest.mark.slow
def test_four_processes_write_40k_rows_without_lock_errors(sqlite_url: str) -> None:
    upgrade_database(sqlite_url)
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=_write, args=(sqlite_url, w, queue)) for w in range(WRITERS)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=240) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert [err for _, err in results if err] == []
    assert all(proc.exitcode == 0 for proc in procs)
    engine = make_engine(sqlite_url)
    assert count_rows(engine, "spot_ticks") == WRITERS * ROWS_PER_WRITER
    engine.dispose()
