"""Migrations: up and down on SQLite and PostgreSQL, models in sync, the too-new guard, `kbtc db`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text
from typer.testing import CliRunner

from kbtc.cli import app
from kbtc.db.engine import make_engine, sqlite_file_is_new
from kbtc.db.migrate import (
    ALEMBIC_INI,
    DatabaseNotMigratedError,
    DatabaseTooNewError,
    check_database_revision,
    check_models,
    current_revision,
    downgrade_database,
    head_revision,
    upgrade_database,
)
from kbtc.db.schema import metadata
from kbtc.db.store import count_rows, read_frame
from kbtc.edge import EdgeParams
from kbtc.pipeline.edges import EdgeSettings
from kbtc.pipeline.score_snapshots import scored_snapshots


def test_upgrade_creates_every_table_and_downgrade_removes_them(any_db_url: str) -> None:
    upgrade_database(any_db_url)
    engine = make_engine(any_db_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert set(metadata.tables) <= tables
        assert current_revision(engine) == head_revision()
        assert check_database_revision(engine) == head_revision()
        check_models(any_db_url)  # raises when models and migrations disagree

        downgrade_database(any_db_url, "base")
        remaining = set(inspect(engine).get_table_names()) - {"alembic_version"}
        assert remaining.isdisjoint(metadata.tables)
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def _snapshot_params(engine: Engine) -> list[tuple[object, ...]]:
    frame = read_frame(engine, "SELECT * FROM edge_snapshots ORDER BY asof_ts, market_ticker")
    column = "params_id" if "params_id" in frame.columns else "params_json"
    return frame.select("asof_ts", "market_ticker", column).rows()


def test_0004_moves_params_json_to_model_params_and_back(any_db_url: str) -> None:
    upgrade_database(any_db_url, "0003")
    engine = make_engine(any_db_url)
    ten = EdgeSettings(params=EdgeParams(contracts=10.0)).params_json()
    legacy = '{"contracts": "3", "kelly_multiplier": 0.25}'  # no model_version: the snapshots' is taken
    snapshots = [(1_000, "A", ten), (2_000, "A", ten), (2_000, "B", legacy), (3_000, "B", None)]
    with engine.begin() as conn:
        for asof, ticker, params in snapshots:
            conn.execute(text(
                "INSERT INTO edge_snapshots (asof_ts, market_ticker, event_ticker, series_ticker, model_version, "
                "fee_yes_dollars, params_json) VALUES (:asof, :ticker, 'E', 'KXBTCD', 'v-old', 0.18, :params)"
            ), {"asof": asof, "ticker": ticker, "params": params})
            conn.execute(text("INSERT INTO snapshot_scores (asof_ts, market_ticker, outcome, scored_ts) "
                              "VALUES (:asof, :ticker, 1, 9000)"), {"asof": asof, "ticker": ticker})
    try:
        upgrade_database(any_db_url)
        assert "params_json" not in {c["name"] for c in inspect(engine).get_columns("edge_snapshots")}
        check_models(any_db_url)
        ten_id = EdgeSettings(params=EdgeParams(contracts=10.0)).param_set().params_id  # what a live tick writes
        legacy_id = hashlib.sha256(legacy.encode()).hexdigest()[:16]
        stored = read_frame(engine, "SELECT params_id, model_version, contracts, params_json, first_seen_ts "
                                    "FROM model_params ORDER BY first_seen_ts")
        assert stored.rows() == [(ten_id, json.loads(ten)["model_version"], 10.0, ten, 1_000),
                                 (legacy_id, "v-old", 3.0, legacy, 2_000)]
        assert _snapshot_params(engine) == [(1_000, "A", ten_id), (2_000, "A", ten_id), (2_000, "B", legacy_id),
                                            (3_000, "B", None)]
        # The scores survived (a table rebuild with foreign keys on would have cascaded into them), and scoring
        # reads each snapshot's order size from its params.
        scored = scored_snapshots(engine, 0, 10_000)
        assert scored["contracts"].to_list() == [10.0, 10.0, 3.0, 1.0]

        downgrade_database(any_db_url, "0003")
        assert "model_params" not in inspect(engine).get_table_names()
        assert "params_id" not in {c["name"] for c in inspect(engine).get_columns("edge_snapshots")}
        assert _snapshot_params(engine) == snapshots
        assert count_rows(engine, "snapshot_scores") == 4
    finally:
        engine.dispose()


MARKET_LED = {"edges": "ix_edges_market_ticker_asof_ts", "edge_snapshots": "ix_edge_snapshots_market_ticker_asof_ts"}


def _market_led_indexes(engine: Engine) -> set[str]:
    present = {table: {str(index["name"]) for index in inspect(engine).get_indexes(table)} for table in MARKET_LED}
    return {name for table, name in MARKET_LED.items() if name in present[table]}


def test_0005_drops_the_market_led_ledger_indexes_and_downgrade_restores_them(any_db_url: str) -> None:
    upgrade_database(any_db_url, "0004")
    engine = make_engine(any_db_url)
    try:
        assert _market_led_indexes(engine) == set(MARKET_LED.values())
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO edges (asof_ts, market_ticker, skip_reason, model_version) "
                              "VALUES (1000, 'A', 'missing_quote', 'v')"))
            conn.execute(text("INSERT INTO edge_snapshots (asof_ts, market_ticker, event_ticker, series_ticker, "
                              "model_version) VALUES (1000, 'A', 'E', 'KXBTCD', 'v')"))
        upgrade_database(any_db_url)
        assert _market_led_indexes(engine) == set()
        check_models(any_db_url)
        downgrade_database(any_db_url, "0004")
        assert _market_led_indexes(engine) == set(MARKET_LED.values())
        assert (count_rows(engine, "edges"), count_rows(engine, "edge_snapshots")) == (1, 1)
    finally:
        engine.dispose()


def test_upgrade_is_repeatable(sqlite_url: str) -> None:
    upgrade_database(sqlite_url)
    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_unmigrated_database_is_reported(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with pytest.raises(DatabaseNotMigratedError, match="kbtc db upgrade"):
        check_database_revision(engine)
    engine.dispose()


def test_database_newer_than_code_is_refused(sqlite_url: str) -> None:
    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed9999'"))
    with pytest.raises(DatabaseTooNewError, match="newer than this kbtc"):
        check_database_revision(engine)
    with pytest.raises(DatabaseTooNewError):
        upgrade_database(sqlite_url)
    engine.dispose()

    result = CliRunner().invoke(app, ["db", "upgrade"], env={"DATABASE_URL": sqlite_url})
    assert result.exit_code == 2
    assert "newer than this kbtc" in result.output
    assert "Traceback" not in result.output


# Every command that opens the database, with the fewest arguments that get it that far.
DATABASE_COMMANDS = [
    ["status"],
    ["compute-edges"],
    ["run-live-edges", "--once"],
    ["refresh-markets"],
    ["poll-quotes", "--seconds", "0"],
    ["refresh-settlements"],
    ["collect-kalshi", "--seconds", "0"],
    ["collect"],
    ["health"],
    ["export", "--table", "quotes"],
    ["prune"],
    ["import", "settlements", "settlements.csv"],
    ["sweep", "--param", "vol.half_life=5m", "--from", "0", "--to", "60"],
    ["score-snapshots"],
    ["settle-ledger"],
    ["run-opportunity-loop", "--once"],
    ["report-model-performance", "--no-files"],
    ["report-open-positions"],
    ["db", "downgrade"],
]


@pytest.mark.parametrize("argv", DATABASE_COMMANDS, ids=" ".join)
def test_every_command_refuses_a_database_newer_than_the_code(
    argv: list[str], sqlite_url: str, isolated_env: Path
) -> None:
    (isolated_env / "settlements.csv").write_text("ticker,result\n")
    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    engine.dispose()

    result = CliRunner().invoke(app, argv, env={"DATABASE_URL": sqlite_url})

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.strip() == (
        f"error: database schema revision 'ffff' is newer than this kbtc (head {head_revision()!r}); "
        "upgrade kbtc, or point DATABASE_URL/DB_PATH at another database"
    )
    engine = make_engine(sqlite_url)
    assert current_revision(engine) == "ffff"  # nothing was migrated or dropped
    engine.dispose()


def test_wal_and_pragmas_are_set(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    engine.dispose()


def test_bulk_load_pragmas_only_when_asked_and_only_on_the_connection(sqlite_url: str, tmp_path: Path) -> None:
    assert sqlite_file_is_new(sqlite_url)
    bulk = make_engine(sqlite_url, bulk_load=True)
    with bulk.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 0  # OFF
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -262_144
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert not sqlite_file_is_new(sqlite_url)
    plain = make_engine(sqlite_url)
    with plain.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL: nothing stayed in the file
    bulk.dispose()
    plain.dispose()
    assert not sqlite_file_is_new("sqlite://") and not sqlite_file_is_new("postgresql://u@h/db")
    (tmp_path / "empty.sqlite").touch()
    assert sqlite_file_is_new(f"sqlite:///{tmp_path / 'empty.sqlite'}")


def test_cli_db_commands(sqlite_url: str) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": sqlite_url}
    result = runner.invoke(app, ["db", "check"], env=env)
    assert result.exit_code == 1, result.output
    assert "kbtc db upgrade" in result.output

    result = runner.invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["db", "current"], env=env)
    assert result.exit_code == 0
    assert f"database: {head_revision()}" in result.output
    result = runner.invoke(app, ["db", "check"], env=env)
    assert result.exit_code == 0, result.output
    assert "models match migrations" in result.output


def test_alembic_command_reports_a_bad_setting_in_one_line(isolated_env: Path) -> None:
    env = {**os.environ, "KALSHI_ENV": "foo"}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), "current"],
        cwd=isolated_env, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: invalid configuration: KALSHI_ENV: Input should be 'demo' or 'prod' (got 'foo')"
    ]
