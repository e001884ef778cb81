"""Model params are stored once per set (`model_params`) and every snapshot refers to its set by `params_id`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, event
from test_edges_pipeline import seed_database

from kbtc.db.engine import make_engine
from kbtc.db.store import count_rows, read_frame
from kbtc.edge import EdgeParams
from kbtc.pipeline.edges import EdgeSettings, LiveTickCache, compute_edge_tick
from kbtc.pipeline.export import export_table
from kbtc.pipeline.model_params import ParamSet, contracts_of, params_id_of

ASOF = 1_795_000_000_000
SNAPSHOT_PARAMS = """
    SELECT s.asof_ts, s.market_ticker, s.params_id, s.fee_yes_dollars, p.contracts, p.params_json, p.first_seen_ts
    FROM edge_snapshots s LEFT JOIN model_params p ON p.params_id = s.params_id ORDER BY s.asof_ts, s.market_ticker
"""


@pytest.fixture
def engine(migrated_url: str) -> Engine:
    eng = make_engine(migrated_url)
    seed_database(eng, ASOF)
    yield eng  # type: ignore[misc]
    eng.dispose()


def _count_params_inserts(engine: Engine) -> list[str]:
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO MODEL_PARAMS"):
            statements.append(statement)

    return statements


def test_param_set_id_is_the_content_hash_and_contracts_default_to_one() -> None:
    text = EdgeSettings(params=EdgeParams(contracts=10.0)).params_json()
    params = ParamSet.from_json(text)
    assert params.params_id == hashlib.sha256(text.encode()).hexdigest()[:16] == params_id_of(text)
    assert (params.contracts, params.model_version) == (10.0, json.loads(text)["model_version"])
    assert EdgeSettings().param_set().params_id != params.params_id
    assert EdgeSettings().param_set() == EdgeSettings().param_set()  # stable across calls (and processes)
    assert [contracts_of(p) for p in ({}, {"contracts": None}, {"contracts": "x"}, {"contracts": "3"})] == [1, 1, 1, 3]
    with pytest.raises(ValueError, match="model_version"):
        ParamSet.from_json('{"contracts": 1}')


def test_params_row_is_written_once_across_live_ticks(engine: Engine) -> None:
    inserts = _count_params_inserts(engine)
    settings, cache = EdgeSettings(persist_vol=False), LiveTickCache()
    for k in range(3):
        assert compute_edge_tick(engine, ASOF + 1_000 * k, settings, cache).snapshots_written == 4
    assert len(inserts) == 1  # the first tick stored the set; the others knew it was there
    params = read_frame(engine, "SELECT * FROM model_params")
    assert params.height == 1
    row = params.row(0, named=True)
    assert row["params_id"] == settings.param_set().params_id and row["params_json"] == settings.params_json()
    assert (row["contracts"], row["first_seen_ts"]) == (1.0, ASOF)
    snaps = read_frame(engine, SNAPSHOT_PARAMS)
    assert snaps.height == 12 and set(snaps["params_id"]) == {row["params_id"]}


def test_a_new_database_gets_its_params_row(engine: Engine, tmp_path: Path) -> None:
    from kbtc.db.migrate import upgrade_database

    settings = EdgeSettings(persist_vol=False)
    compute_edge_tick(engine, ASOF, settings)
    other_url = f"sqlite:///{tmp_path / 'other.sqlite'}"
    upgrade_database(other_url)
    other = make_engine(other_url)
    seed_database(other, ASOF)
    compute_edge_tick(other, ASOF, settings)  # same process and settings, another database
    assert count_rows(other, "model_params") == 1
    assert read_frame(other, SNAPSHOT_PARAMS)["params_json"].null_count() == 0
    other.dispose()


def test_two_settings_give_two_ids_and_each_snapshot_refers_to_its_own(engine: Engine) -> None:
    one = EdgeSettings(persist_vol=False)
    ten = EdgeSettings(params=EdgeParams(contracts=10.0), persist_vol=False)
    compute_edge_tick(engine, ASOF, one)
    compute_edge_tick(engine, ASOF + 4_000, ten)
    compute_edge_tick(engine, ASOF + 8_000, one)
    params = read_frame(engine, "SELECT params_id, contracts, first_seen_ts FROM model_params ORDER BY contracts")
    assert params.rows() == [(one.param_set().params_id, 1.0, ASOF), (ten.param_set().params_id, 10.0, ASOF + 4_000)]
    snaps = read_frame(engine, SNAPSHOT_PARAMS)
    by_asof = snaps.group_by("asof_ts").agg(pl.col("params_id").unique(), pl.col("contracts").unique()).sort("asof_ts")
    assert by_asof.rows() == [
        (ASOF, [one.param_set().params_id], [1.0]),
        (ASOF + 4_000, [ten.param_set().params_id], [10.0]),
        (ASOF + 8_000, [one.param_set().params_id], [1.0]),
    ]
    # The stored fees are order totals for the referenced set's contracts.
    fees = snaps.filter(pl.col("market_ticker") == "KXBTCD-E-T99999.99").sort("asof_ts")["fee_yes_dollars"]
    assert fees.to_list() == [0.02, 0.18, 0.02]


@pytest.mark.parametrize("any_db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_of_snapshots_carries_their_params(engine: Engine, tmp_path: Path, fmt: str) -> None:
    one, ten = EdgeSettings(persist_vol=False), EdgeSettings(params=EdgeParams(contracts=10.0), persist_vol=False)
    compute_edge_tick(engine, ASOF, one)
    compute_edge_tick(engine, ASOF + 4_000, ten)
    out = tmp_path / f"snapshots.{fmt}"
    assert export_table(engine, "edge_snapshots", out, fmt=fmt, chunk_rows=3) == 8  # type: ignore[arg-type]
    frame = pl.read_parquet(out) if fmt == "parquet" else pl.read_csv(out, infer_schema_length=None)
    assert frame.columns[-3:] == ["params_id", "contracts", "params_json"]
    assert frame["contracts"].to_list() == [1.0] * 4 + [10.0] * 4
    assert frame["params_json"].to_list() == [one.params_json()] * 4 + [ten.params_json()] * 4
    assert {json.loads(text)["contracts"] for text in frame["params_json"]} == {1.0, 10.0}
    # The params table itself exports as any other.
    assert export_table(engine, "model_params", tmp_path / f"params.{fmt}", fmt=fmt) == 2  # type: ignore[arg-type]
