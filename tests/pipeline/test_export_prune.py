"""Export writes readable Parquet/CSV; prune removes only old raw data and old tapes."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from kbtc.cli import app
from kbtc.db.engine import make_engine
from kbtc.db.store import count_rows, upsert
from kbtc.pipeline.export import export_table
from kbtc.pipeline.prune import prune

T0 = 1_795_000_000_000


def _ticks(n: int) -> pl.DataFrame:
    ts = [T0 + 1000 * i for i in range(n)]
    return pl.DataFrame(
        {"product_id": "BTC-USD", "source": "cb", "tick_ts": ts, "venue_time_ns": [t * 10**6 for t in ts],
         "received_ts": ts, "price": [95_000.0 + i for i in range(n)]}
    )


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export(migrated_url: str, tmp_path: Path, fmt: str) -> None:
    engine = make_engine(migrated_url)
    upsert(engine, "spot_ticks", _ticks(25))
    out = tmp_path / f"ticks.{fmt}"
    assert export_table(engine, "spot_ticks", out, fmt=fmt, chunk_rows=10) == 25  # type: ignore[arg-type]
    frame = pl.read_parquet(out) if fmt == "parquet" else pl.read_csv(out, try_parse_dates=True)
    assert frame.height == 25
    assert frame["price"].to_list() == [95_000.0 + i for i in range(25)]
    tick_ts = frame.schema["tick_ts"]
    assert isinstance(tick_ts, pl.Datetime) and tick_ts.time_zone == "UTC"
    if fmt == "parquet":
        assert tick_ts.time_unit == "ms"
    assert export_table(engine, "spot_ticks", tmp_path / f"since.{fmt}", fmt=fmt, since_ts=T0 + 20_000) == 5  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown table"):
        export_table(engine, "nope", out)
    engine.dispose()


def test_prune_keeps_recent_rows_and_ledger(migrated_url: str, tmp_path: Path) -> None:
    engine = make_engine(migrated_url)
    upsert(engine, "spot_ticks", _ticks(100))
    upsert(engine, "edges", [{"asof_ts": T0, "market_ticker": "M", "model_version": "v"}])
    tape = tmp_path / "tape" / "coinbase"
    tape.mkdir(parents=True)
    old, new = tape / "old.jsonl.gz", tape / "new.jsonl.gz"
    old.write_bytes(b"x" * 10)
    new.write_bytes(b"y")
    os.utime(old, (T0 / 1000, T0 / 1000))
    result = prune(engine, older_than_ts=T0 + 40_000, tape_root=tmp_path / "tape", batch_rows=7)
    assert result.rows_deleted["spot_ticks"] == 40
    assert count_rows(engine, "spot_ticks") == 60
    assert count_rows(engine, "edges") == 1
    assert (result.tape_files_removed, result.tape_bytes_removed) == (1, 10)
    assert not old.exists() and new.exists()
    with pytest.raises(ValueError, match="not prunable"):
        prune(engine, older_than_ts=T0, tables=("edge_snapshots",))
    engine.dispose()


def test_cli_health_export_prune(sqlite_url: str) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": sqlite_url}
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    result = runner.invoke(app, ["health"], env=env)
    assert result.exit_code == 0, result.output
    assert "spot_ticks" in result.output
    result = runner.invoke(app, ["export", "--table", "markets", "--format", "csv"], env=env)
    assert result.exit_code == 0, result.output
    assert "wrote 0 rows" in result.output
    result = runner.invoke(app, ["export", "--table", "nope"], env=env)
    assert result.exit_code == 2 and "unknown table" in result.output
    result = runner.invoke(app, ["prune", "--older-than-days", "1", "--tables", "quotes"], env=env)
    assert result.exit_code == 0, result.output
    assert "quotes: 0 rows deleted" in result.output
