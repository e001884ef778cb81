"""The edges step: one tick reads the inputs as of a time, estimates σ and the basis, runs the engine and writes
`edges` (every evaluated market, with its skip reason) and `edge_snapshots` (every selected market), whose
`params_id` refers to the tick's settings in `model_params` (stored once: kbtc/pipeline/model_params.py).

Both writes are upserts on (as-of time, market): re-running a tick replaces its rows, never duplicates them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine

from kbtc.config import Settings
from kbtc.db.engine import write_transaction
from kbtc.db.schema import Edge, EdgeSnapshot, VolEstimate
from kbtc.db.store import copy_upsert, table_of, upsert_in, upsert_sql
from kbtc.edge import EdgeParams, compute_edges, market_state
from kbtc.edge.basis import BasisParams, estimate_basis, reference_spot_span_ms
from kbtc.edge.engine import with_depth
from kbtc.edge.params import SettlementMode
from kbtc.edge.volatility import FallbackPolicy, VolParams, estimate_volatility, vol_estimate_rows
from kbtc.edge.window import first_print_offset_ms
from kbtc.pipeline.edge_inputs import MarketCatalogCache, load_edge_inputs, load_latest_books
from kbtc.pipeline.model_params import ParamSet, is_stored, remember_stored, store_params
from kbtc.pipeline.quote_cache import LatestQuoteCache
from kbtc.pipeline.spot_cache import SpotTickCache

# Skips decided after selection: the market was in the universe, so it still gets a snapshot (p_model null).
POST_SELECTION_SKIPS = ("sigma_not_ready", "window_prints_missing", "invalid_edge")
_EDGE_TABLE_COLUMNS = tuple(c.name for c in Edge.__table__.columns)
_SNAPSHOT_COLUMNS = tuple(c.name for c in EdgeSnapshot.__table__.columns)


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """Everything one edge tick needs besides the database and the clock."""

    params: EdgeParams = field(default_factory=EdgeParams)
    vol: VolParams = field(default_factory=VolParams)
    basis: BasisParams = field(default_factory=BasisParams)
    product_id: str = "BTC-USD"
    index_id: str = "BRTI"
    persist_vol: bool = True
    book_max_age_s: float | None = 30.0  # books older than this are ignored; None: no depth-aware EV

    def params_json(self) -> str:
        """The model version and every parameter (edge, volatility, basis) as canonical JSON (`model_params`)."""
        payload = json.loads(self.params.to_json())
        payload["vol"] = asdict(self.vol)
        payload["basis"] = asdict(self.basis)
        payload["product_id"] = self.product_id
        return json.dumps(payload, sort_keys=True, separators=(",", ":"))

    def param_set(self) -> ParamSet:
        """The settings' `model_params` set: the JSON, its id and its order size (computed once per setting)."""
        return _param_set(self)


@functools.lru_cache(maxsize=64)
def _param_set(settings: EdgeSettings) -> ParamSet:
    return ParamSet.from_json(settings.params_json())


def edge_settings_from(
    settings: Settings,
    *,
    contracts: float = 1.0,
    settlement: SettlementMode = "average",
    basis: bool | None = None,
    index_spot: bool | None = None,
    sigma_fallback: FallbackPolicy | None = None,
) -> EdgeSettings:
    """The edge settings of the configuration (series, spot product, staleness, EDGE_* switches); the keyword
    arguments (a command's flags) override it where given."""
    params = EdgeParams(
        settlement=settlement,
        contracts=contracts,
        series=settings.kalshi_series,
        max_spot_age_s=settings.coinbase_stale_seconds,
        index_spot=settings.edge_index_spot if index_spot is None else index_spot,
    )
    return EdgeSettings(
        params=params,
        vol=VolParams(fallback=settings.edge_sigma_fallback if sigma_fallback is None else sigma_fallback),
        basis=BasisParams(enabled=settings.edge_basis if basis is None else basis),
        product_id=settings.coinbase_product_id,
    )


@dataclass(slots=True)
class LiveTickCache:
    """What a live loop keeps between its ticks: the market list, the latest quote per market, the spot ticks.

    Each part re-reads whatever it cannot prove unchanged, so a tick with the cache returns what it would
    without it (tests/pipeline/test_quote_cache.py).
    """

    catalog: MarketCatalogCache = field(default_factory=MarketCatalogCache)
    quotes: LatestQuoteCache = field(default_factory=LatestQuoteCache)
    spot: SpotTickCache = field(default_factory=SpotTickCache)


@dataclass(frozen=True, slots=True)
class EdgeTick:
    """What one tick computed and wrote."""

    asof_ts: int
    edges: pl.DataFrame
    edges_written: int
    snapshots_written: int

    def skip_counts(self) -> dict[str, int]:
        """Markets per skip reason (`priced` for none)."""
        counts = self.edges.group_by(pl.col("skip_reason").fill_null("priced")).len()
        return dict(counts.sort("skip_reason").iter_rows())


def snapshot_rows(edges: pl.DataFrame, params_id: str) -> pl.DataFrame:
    """`edge_snapshots` rows of the selected markets: priced ones and those skipped after selection."""
    selected = edges.filter(pl.col("skip_reason").is_null() | pl.col("skip_reason").is_in(POST_SELECTION_SKIPS))
    return selected.with_columns(
        # Both sides' book: Kalshi quotes YES; a missing NO price is the complement of the YES one.
        pl.coalesce("no_bid_cents", 100.0 - pl.col("yes_ask_cents")).alias("no_bid_cents"),
        pl.coalesce("no_ask_cents", 100.0 - pl.col("yes_bid_cents")).alias("no_ask_cents"),
        pl.lit(params_id, pl.String).alias("params_id"),
    ).select(_SNAPSHOT_COLUMNS)


def edge_rows(edges: pl.DataFrame) -> pl.DataFrame:
    """`edges` rows: every evaluated market, the asks used (null for an untradable side)."""
    return edges.with_columns(
        pl.col("yes_ask_used_cents").alias("yes_ask_cents"), pl.col("no_ask_used_cents").alias("no_ask_cents")
    ).select(_EDGE_TABLE_COLUMNS)


# An unpriced market's row lacks these: such rows go through an upsert without them (NULL by default, and set
# to NULL on conflict) — a quarter fewer parameters to bind for most of a 10k-market tick's rows.
_UNPRICED_NULLS = ("p_model", "ev_yes_dollars", "ev_no_dollars")


def _upsert_statement(engine: Engine, table: str, unpriced: bool = False) -> tuple[str, tuple[str, ...] | None]:
    """The upsert of `table`'s columns (`unpriced`: of `edges` without `_UNPRICED_NULLS`)."""
    model = Edge if table == Edge.__tablename__ else EdgeSnapshot
    columns = _EDGE_TABLE_COLUMNS if model is Edge else _SNAPSHOT_COLUMNS
    update = [name for name in columns if name not in ("asof_ts", "market_ticker")]
    if unpriced:
        columns = tuple(name for name in columns if name not in _UNPRICED_NULLS)
    return upsert_sql(engine, table_of(model), columns, update_columns=update)


def write_edges(
    engine: Engine, edges: pl.DataFrame, params: ParamSet, *, vol_rows: Sequence[Mapping[str, Any]] = ()
) -> tuple[int, int]:
    """Upsert the tick's `edges` and `edge_snapshots` rows; return (edges written, snapshots written).

    The same upserts as kbtc.db.store.upsert (update on the natural key), in one write transaction: one commit
    per tick instead of one per table, and the tick's tables change together — with the `model_params` row the
    snapshots refer to, inserted (or ignored) unless this process already stored it through `engine`, and the
    tick's `vol_estimates` rows (`vol_rows`, kbtc.edge.volatility.vol_estimate_rows) when given.
    """
    rows = edge_rows(edges)
    snapshots = snapshot_rows(edges, params.params_id)
    new_params = snapshots.height > 0 and not is_stored(engine, params)
    if rows.height or snapshots.height or vol_rows:
        with write_transaction(engine) as conn:
            upsert_in(conn, VolEstimate, vol_rows)
            if new_params:
                store_params(conn, params, first_seen_ts=int(snapshots.select(pl.col("asof_ts").min()).item()))
            if engine.dialect.name == "postgresql":
                # COPY: the frames go as Polars-written CSV, not a Python object per value (~20× less client CPU).
                copy_upsert(conn, Edge, rows)
                copy_upsert(conn, EdgeSnapshot, snapshots)
            else:
                _execute_upserts(conn, engine, rows, snapshots)
        if new_params:
            remember_stored(engine, params)
    return rows.height, snapshots.height


def _execute_upserts(conn: Connection, engine: Engine, rows: pl.DataFrame, snapshots: pl.DataFrame) -> None:
    unpriced = pl.all_horizontal(pl.col(name).is_null() for name in _UNPRICED_NULLS)
    parts = [
        (Edge.__tablename__, False, rows.filter(~unpriced)),
        (Edge.__tablename__, True, rows.filter(unpriced).drop(_UNPRICED_NULLS)),
        (EdgeSnapshot.__tablename__, False, snapshots),
    ]
    for table, narrow, frame in parts:
        if frame.height == 0:
            continue
        sql, order = _upsert_statement(engine, table, narrow)
        # Column lists zipped into tuples: half the cost of iter_rows (which builds each row in Python).
        values = list(zip(*(frame[name].to_list() for name in order), strict=True)) if order is not None \
            else frame.to_dicts()
        conn.exec_driver_sql(sql, values)


def tick_state(
    spot: pl.DataFrame,
    asofs: Sequence[int],
    vol: pl.DataFrame,
    basis: pl.DataFrame,
    *,
    index_prints: pl.DataFrame,
    params: EdgeParams,
) -> pl.DataFrame:
    """The engine's state frame at `asofs`: the index as spot where fresh (`params.index_spot`), else Coinbase."""
    return market_state(
        spot,
        asofs,
        vol,
        basis,
        index_prints=index_prints if params.index_spot else None,
        index_max_age_s=params.max_spot_age_s,
        index_since_s=first_print_offset_ms(params.window_prints, params.print_interval_s) / 1000.0,
    )


def compute_edge_tick(
    engine: Engine, asof_ts: int, settings: EdgeSettings | None = None, cache: LiveTickCache | None = None
) -> EdgeTick:
    """Run one edge tick at `asof_ts` (epoch ms): read, estimate, price, write. Nothing after `asof_ts` is read.

    A live loop passes one `cache` to every tick: the market list is re-read only when the catalog changed,
    and only the quotes and spot ticks inserted since the previous tick are read.
    """
    settings = settings or EdgeSettings()
    params = settings.params
    inputs = load_edge_inputs(
        engine,
        asof_ts,
        series=params.series,
        product_id=settings.product_id,
        spot_lookback_s=max(settings.vol.lookback_s, settings.basis.index_lookback_s + 120.0),
        quote_max_age_s=params.quote_max_age_s,
        index_id=settings.index_id,
        basis_lookback_s=settings.basis.lookback_s,
        reference_span_ms=reference_spot_span_ms(settings.basis) if settings.basis.enabled else None,
        catalog=cache.catalog if cache is not None else None,
        quote_cache=cache.quotes if cache is not None else None,
        spot_cache=cache.spot if cache is not None else None,
    )
    vol = estimate_volatility(inputs.vol_spot, [asof_ts], settings.vol)
    basis = estimate_basis(
        inputs.spot,
        [asof_ts],
        references=inputs.settled_references,
        index_prints=inputs.index_prints,
        params=settings.basis,
        reference_spot=inputs.reference_spot,
    )
    state = tick_state(inputs.spot, [asof_ts], vol, basis, index_prints=inputs.index_prints, params=params)
    quotes = inputs.quotes.with_columns(pl.lit(asof_ts, pl.Int64).alias("asof_ts"))
    edges = compute_edges(
        inputs.markets, quotes, state, prints=inputs.spot, index_prints=inputs.index_prints, params=params,
        grids=cache.catalog.grids() if cache is not None else None,
    )
    if settings.book_max_age_s is not None:
        # Only priced markets get a depth-aware EV: read their books alone (a tenth of a 10k-market tick's).
        priced = edges.filter(pl.col("skip_reason").is_null())["market_ticker"].to_list()
        books = load_latest_books(
            engine, asof_ts, params.series, max_age_ms=round(settings.book_max_age_s * 1000), tickers=priced
        ).with_columns(pl.lit(asof_ts, pl.Int64).alias("asof_ts"))
        edges = with_depth(edges, books, params)
    vol_rows = vol_estimate_rows(vol, settings.product_id, settings.vol).to_dicts() if settings.persist_vol else []
    edges_written, snapshots_written = write_edges(engine, edges, settings.param_set(), vol_rows=vol_rows)
    return EdgeTick(asof_ts, edges, edges_written, snapshots_written)


def sanity_lines(tick: EdgeTick, top: int = 5) -> list[str]:
    """The original's sanity printout: quote freshness, model vs implied mid, top EV YES and NO."""
    edges = tick.edges
    quoted = edges.filter(pl.col("quote_ts").is_not_null())
    lines = [f"as of {tick.asof_ts}: {edges.height} markets evaluated, {tick.snapshots_written} snapshots written"]
    if quoted.height:
        age = pl.col("quote_age_s")
        stats = quoted.select(age.min().alias("newest"), age.median().alias("median"), age.max().alias("oldest"))
        newest, median, oldest = stats.row(0)
        lines.append(
            f"quote freshness: {quoted.height} markets quoted; newest {newest:.1f} s, "
            f"median {median:.1f} s, oldest {oldest:.1f} s old"
        )
    else:
        lines.append("quote freshness: no quotes")
    priced = edges.filter(pl.col("skip_reason").is_null())
    if priced.height:
        gap = (pl.col("p_model") - pl.col("p_market")).abs()
        mean_gap, max_gap = priced.select(gap.mean().alias("a"), gap.max().alias("b")).row(0)
        lines.append(
            f"model vs implied mid: {priced.height} priced, mean |p_model − mid| {mean_gap or 0:.4f}, "
            f"max {max_gap or 0:.4f}"
        )
        for side in ("yes", "no"):
            best = priced.filter(pl.col(f"ev_{side}_dollars").is_not_null()).sort(
                f"ev_{side}_per_contract", descending=True
            )
            for row in best.head(top).iter_rows(named=True):
                lines.append(
                    f"top EV {side.upper()}: {row['market_ticker']} p_model={row['p_model']:.4f} "
                    f"mid={row['p_market'] if row['p_market'] is None else round(row['p_market'], 4)} "
                    f"ask={row[f'{side}_ask_used_cents']}¢ ev/contract=${row[f'ev_{side}_per_contract']:+.4f}"
                )
    skips = ", ".join(f"{reason}={n}" for reason, n in tick.skip_counts().items())
    lines.append(f"outcomes: {skips}")
    return lines
