"""CSV imports: formats validated with line numbers, bad rows kept out, re-imports idempotent."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbtc.db.engine import make_engine
from kbtc.db.store import count_rows, read_frame
from kbtc.pipeline.imports import ImportFormatError, import_csv

NOW = 1_795_000_000_000


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text.strip() + "\n")
    return path


def test_markets(migrated_url: str, tmp_path: Path) -> None:
    engine = make_engine(migrated_url)
    path = _write(
        tmp_path,
        "markets.csv",
        """
ticker,open_time,close_time,strike_type,floor_strike,cap_strike,result,expiration_value
KXBTCD-26NOV2517-T95999.99,2026-11-24T21:00:00Z,2026-11-25T22:00:00Z,greater,95999.99,,yes,96010.5
KXBTC-26NOV2517-B96250,,1795644000,between,96000,96499.99,no,96010.5
KXBTC-26NOV2517-B96750,,1795644000,between,96500,,no,
KXBTC-26NOV2517-B97250,,next tuesday,between,97000,97499.99,,
BAD-1,,1795644000,sideways,1,2,,
KXBTC-26NOV2517-T99000,,1795644000,less,,98999.99,maybe,
""",
    )
    result = import_csv(engine, "markets", path, now_ts=NOW)
    assert result.rows_read == 6 and result.rows_written == 2
    assert result.errors == [
        (4, "missing cap_strike"),
        (5, "unparseable close_time"),
        (6, "unknown strike_type"),
        (7, "result must be yes, no or empty"),
    ]
    rows = read_frame(engine, "SELECT market_ticker, event_ticker, series_ticker, close_ts, result, status FROM markets ORDER BY market_ticker")
    assert rows.rows() == [
        ("KXBTC-26NOV2517-B96250", "KXBTC-26NOV2517", "KXBTC", 1_795_644_000_000, "no", "finalized"),
        ("KXBTCD-26NOV2517-T95999.99", "KXBTCD-26NOV2517", "KXBTCD", 1_795_644_000_000, "yes", "finalized"),
    ]
    import_csv(engine, "markets", path, now_ts=NOW + 1)
    assert count_rows(engine, "markets") == 2
    engine.dispose()


@pytest.mark.parametrize(("unit", "header_values"), [("dollars", "0.4100,0.4350"), ("cents", "41,43.5")])
def test_quotes_in_dollars_or_cents(migrated_url: str, tmp_path: Path, unit: str, header_values: str) -> None:
    engine = make_engine(migrated_url)
    path = _write(
        tmp_path,
        "quotes.csv",
        f"""
ts,ticker,yes_bid,yes_ask
1795000000000,KXBTC15M-X,{header_values}
1795000001,KXBTC15M-X,{header_values}
bad,KXBTC15M-X,{header_values}
1795000002000,KXBTC15M-X,{"0.6,0.5" if unit == "dollars" else "60,50"}
""",
    )
    result = import_csv(engine, "quotes", path, now_ts=NOW)  # auto unit detection
    assert result.errors == [(4, "unparseable ts"), (5, "yes_bid above yes_ask")]
    stored = read_frame(engine, "SELECT quote_ts, yes_bid_cents, yes_ask_cents, no_bid_cents, no_ask_cents FROM quotes ORDER BY quote_ts")
    assert stored.rows() == [
        (1_795_000_000_000, 41.0, 43.5, 56.5, 59.0),
        (1_795_000_001_000, 41.0, 43.5, 56.5, 59.0),
    ]
    engine.dispose()


def test_spot_trades_sharing_a_millisecond_stay_distinct(migrated_url: str, tmp_path: Path) -> None:
    engine = make_engine(migrated_url)
    path = _write(tmp_path, "spot.csv", "ts,price\n2026-11-25T00:00:00.123Z,95000\n2026-11-25T00:00:00.123Z,95001\n1795000000,-1\n")
    result = import_csv(engine, "spot", path, now_ts=NOW)
    assert result.rows_written == 2 and result.errors == [(4, "price missing or not positive")]
    import_csv(engine, "spot", path, now_ts=NOW)
    assert count_rows(engine, "spot_ticks") == 2
    engine.dispose()


def test_candles_and_format_errors(migrated_url: str, tmp_path: Path) -> None:
    engine = make_engine(migrated_url)
    path = _write(tmp_path, "candles.csv", "ts,open,high,low,close,volume\n1795000000,1,2,0.5,1.5,10\n1795000060,1,1.2,1.1,1.0,3\n")
    result = import_csv(engine, "candles", path, now_ts=NOW)
    assert result.rows_written == 1 and result.errors == [(3, "low/high do not bracket open/close")]
    with pytest.raises(ImportFormatError, match="lacks column"):
        import_csv(engine, "quotes", path, now_ts=NOW)
    engine.dispose()


def test_cli_import(sqlite_url: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kbtc.cli import app

    good = _write(tmp_path, "spot.csv", "ts,price\n1795000000,95000\nnope,1\n")
    bad = _write(tmp_path, "bad.csv", "ts,price\nnope,1\n")
    runner = CliRunner()
    env = {"DATABASE_URL": sqlite_url}
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    result = runner.invoke(app, ["import", "spot", str(good)], env=env, terminal_width=300)
    assert result.exit_code == 0, result.output
    assert "1 imported, 1 rejected" in result.output and "spot.csv:3: unparseable ts" in result.output
    assert runner.invoke(app, ["import", "spot", str(bad)], env=env).exit_code == 1
    result = runner.invoke(app, ["import", "quotes", str(good)], env=env)
    assert result.exit_code == 2 and "lacks column" in result.output
