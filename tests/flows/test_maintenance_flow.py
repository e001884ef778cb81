"""The maintenance flows: migrate (with its artifact), and prune old raw data (the `prune` deployment)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kbtc.db.engine import make_engine
from kbtc.db.migrate import current_revision, head_revision, upgrade_database
from kbtc.db.store import count_rows, upsert


@pytest.mark.slow
def test_migrate_flow(prefect_server: None, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.maintenance import migrate_database

    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    counts = migrate_database()
    assert counts["markets"] == 0
    engine = make_engine(sqlite_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


@pytest.mark.slow
def test_prune_flow_keeps_recent_data_and_the_ledger(prefect_server: None, sqlite_url: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.maintenance import prune_data

    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    now = int(time.time() * 1000)
    ages_days = [45, 31, 2, 0]
    upsert(engine, "spot_ticks", [{"product_id": "BTC-USD", "source": "cb", "tick_ts": now - days * 86_400_000,
                                   "venue_time_ns": (now - days * 86_400_000) * 10**6,
                                   "received_ts": now - days * 86_400_000, "price": 95_000.0 + days}
                                  for days in ages_days])
    upsert(engine, "edges", [{"asof_ts": now - 45 * 86_400_000, "market_ticker": "M", "model_version": "v"}])
    tape = tmp_path / "data" / "tape" / "coinbase"
    tape.mkdir(parents=True)
    old, new = tape / "old.jsonl.gz", tape / "new.jsonl.gz"
    old.write_bytes(b"x" * 10)
    new.write_bytes(b"y")
    old_s = time.time() - 40 * 86_400
    os.utime(old, (old_s, old_s))
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    result = prune_data(older_than_days=30)
    assert result["rows_deleted"]["spot_ticks"] == 2 and result["tape_files_removed"] == 1
    assert count_rows(engine, "spot_ticks") == 2 and count_rows(engine, "edges") == 1  # the ledger is kept
    assert not old.exists() and new.exists()
    assert prune_data(older_than_days=1, tables=["spot_ticks"], tapes=False)["rows_deleted"] == {"spot_ticks": 1}
    assert new.exists()
    engine.dispose()
