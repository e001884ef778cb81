"""The edge engine: frames in, one edges frame out, for one or many as-of times.

`compute_edges(markets, quotes, state, prints=…)` evaluates every (as-of time, market) pair: it gates the pair
(`selection`), prices the survivors (`pricing`: probability, fees, EV, Kelly), caps Kelly per event and
returns every input and output column, with `skip_reason` null exactly for priced rows. The same call serves a
live tick (one as-of time, ~200 markets) and a replay (many as-of times); nothing here reads a clock or a
database.

Inputs:
- `markets`: the catalog (kbtc.pipeline.edge_inputs schema: market_ticker, event_ticker, series_ticker, status,
  strike_type, floor_strike, cap_strike, open_ts, close_ts, fee_type, fee_multiplier, price_level_structure,
  price_ranges, …).
- `quotes`: one row per (asof_ts, market_ticker): the latest quote at or before the as-of time
  (quote_ts, yes/no bid/ask cents, sizes) — `quotes_asof` builds it from a quote history.
- `state`: one row per asof_ts: spot_usd, spot_ts, spot_source, sigma_annual, sigma_status and optionally
  basis_usd, basis_std_usd, basis_status (`market_state` builds it from spot ticks, index prints and the
  volatility/basis frames).
- `prints`: spot ticks (ts, price[, best_bid, best_ask]) covering open settlement windows, for the fixed prints;
  `index_prints` (ts, price): the settlement index's own prints, for the fixed prints of as-of times whose
  spot is the index (`spot_source = "index"`).
- `books` (optional): bid ladders (asof_ts, market_ticker, side, price_cents, size); when given, the EV of the
  full order size walking the book is added (`depth_*` columns; null without a book).

Time: the probability's horizon runs from the spot's own time (`spot_ts`) to the close — the information is as
old as the spot — while selection uses the as-of time. Stale spots are gated (`spot_stale`).
Spot source: when fresh settlement-index prints are available (BRTI relayed by Kalshi's `cfbenchmarks_value`),
the index itself is the spot and its prints are the window's fixed prints — already in settlement units, so
no basis (0 ± 0, `basis_status = "spot_is_index"`). Otherwise Coinbase: the basis (`basis_usd`, index −
Coinbase) is added to spot and to the fixed prints, and its standard deviation enters the variance
(`probability`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import polars as pl

from kbtc.edge.ev import BOOK_KEY, book_asks, capped_event_exposure, depth_ev
from kbtc.edge.params import MODEL_VERSION, EdgeParams
from kbtc.edge.pricing import PRICING_OUTPUTS, price
from kbtc.edge.quality import PriceGrids, off_grid, off_grid_rows, price_grids
from kbtc.edge.selection import gate, select_band
from kbtc.edge.stages import Stages, apply_stages
from kbtc.edge.window import first_print_offset_ms, fixed_window_prints, spot_price

# strike_type and fee_type are Categorical inside the engine: typed once on the (small) markets frame, every
# (as-of, market) row inherits them, and a comparison with a literal is an integer one (a string equality costs
# ~1 ns a row, and pricing makes nine). The edges frame gives them back as strings.
CATEGORICAL_MARKET_COLUMNS = ("strike_type", "fee_type")
MARKET_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "market_ticker": pl.String,
    "event_ticker": pl.String,
    "series_ticker": pl.String,
    "status": pl.String,
    "strike_type": pl.Categorical,
    "floor_strike": pl.Float64,
    "cap_strike": pl.Float64,
    "open_ts": pl.Int64,
    "close_ts": pl.Int64,
    "settlement_ts": pl.Int64,
    "fee_type": pl.Categorical,
    "fee_multiplier": pl.Float64,
    "price_level_structure": pl.String,
    "price_ranges": pl.String,
}
QUOTE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "asof_ts": pl.Int64,
    "market_ticker": pl.String,
    "quote_ts": pl.Int64,
    "yes_bid_cents": pl.Float64,
    "yes_ask_cents": pl.Float64,
    "no_bid_cents": pl.Float64,
    "no_ask_cents": pl.Float64,
    "yes_bid_size": pl.Float64,
    "yes_ask_size": pl.Float64,
}
STATE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "asof_ts": pl.Int64,
    "spot_usd": pl.Float64,
    "spot_ts": pl.Int64,
    "sigma_annual": pl.Float64,
    "sigma_status": pl.String,
    "basis_usd": pl.Float64,
    "basis_std_usd": pl.Float64,
    "basis_status": pl.String,
    "spot_source": pl.String,
}
SPOT_SOURCE_COINBASE = "coinbase"
SPOT_SOURCE_INDEX = "index"
BASIS_STATUS_SPOT_IS_INDEX = "spot_is_index"
EDGE_COLUMNS = (
    "asof_ts", "market_ticker", "event_ticker", "series_ticker", "status", "strike_type", "floor_strike",
    "cap_strike", "close_ts", "settlement_ts", "time_to_close_s", "horizon_s", "spot_usd", "spot_ts", "spot_age_s",
    "spot_source", "basis_usd", "basis_std_usd", "basis_status", "model_spot_usd", "sigma_annual", "sigma_status",
    "fixed_sum_usd", "distance_pct", "quote_ts", "quote_age_s", "yes_bid_cents", "yes_ask_cents", "no_bid_cents",
    "no_ask_cents", "yes_bid_size", "yes_ask_size", "p_market", "yes_ask_used_cents", "no_ask_used_cents",
    "yes_side_reason", "no_side_reason", "fee_type", "fee_multiplier", "contracts", *PRICING_OUTPUTS,
    "depth_filled_yes", "depth_ev_yes_dollars", "depth_filled_no", "depth_ev_no_dollars", "skip_reason",
    "model_version",
)  # fmt: skip
_PRICED_ONLY = PRICING_OUTPUTS
# Below this many (as-of, market) pairs the in-memory engine wins (a live tick: its planning is cheaper);
# above it the streaming engine's morsel-parallel, cache-sized batches do (a replay).
_STREAMING_FROM_ROWS = 200_000


def typed(frame: pl.DataFrame, schema: dict[str, pl.DataType | type[pl.DataType]]) -> pl.DataFrame:
    """`frame` with exactly the columns of `schema`, cast, missing ones null (extra columns dropped)."""
    if list(frame.schema.items()) == list(schema.items()):  # already typed (the loaders' frames): nothing to do
        return frame
    return frame.select(
        (pl.col(name) if name in frame.columns else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in schema.items()
    )


def quotes_asof(history: pl.DataFrame, asof_ts: Sequence[int]) -> pl.DataFrame:
    """The latest quote per market at or before each as-of time (no look-ahead), one row per (asof, market)."""
    quotes = typed(history, {k: v for k, v in QUOTE_SCHEMA.items() if k != "asof_ts"}).sort("quote_ts")
    grid = pl.DataFrame({"asof_ts": list(asof_ts)}, schema={"asof_ts": pl.Int64}).join(
        quotes.select("market_ticker").unique(), how="cross"
    )
    joined = grid.sort("asof_ts").join_asof(
        quotes, left_on="asof_ts", right_on="quote_ts", by="market_ticker", strategy="backward",
        check_sortedness=False,  # sorted by time within each market above; polars cannot verify with `by`
    )
    return typed(joined.filter(pl.col("quote_ts").is_not_null()), QUOTE_SCHEMA)


def market_state(
    spot: pl.DataFrame,
    asof_ts: Sequence[int],
    vol: pl.DataFrame | None = None,
    basis: pl.DataFrame | None = None,
    *,
    index_prints: pl.DataFrame | None = None,
    index_max_age_s: float = 10.0,
    index_since_s: float = 59.0,
) -> pl.DataFrame:
    """One row per as-of time: the latest spot at or before it, joined with the vol and basis estimates.

    `vol` has asof_ts, sigma_annual, sigma_status (kbtc.edge.volatility); `basis` has asof_ts, basis_usd,
    basis_std_usd, basis_status (kbtc.edge.basis). With `index_prints` (ts, price), an as-of time whose latest
    index print is at most `index_max_age_s` old, and which had one of that age `index_since_s` earlier too
    (the index was printing when the oldest fixed print an open window needs was fixed: `(n − 1)·Δ`), takes
    the index as its spot (`spot_source = "index"`, basis 0 ± 0); every other one Coinbase (`"coinbase"`).
    """
    ticks = (
        spot.select(pl.col("ts").cast(pl.Int64).alias("spot_ts"), spot_price(spot).alias("spot_usd"))
        .filter(pl.col("spot_usd").is_finite() & (pl.col("spot_usd") > 0))
        .sort("spot_ts")
    )
    frame = (
        pl.DataFrame({"asof_ts": list(asof_ts)}, schema={"asof_ts": pl.Int64})
        .sort("asof_ts")
        .join_asof(ticks, left_on="asof_ts", right_on="spot_ts", strategy="backward")
    )
    for extra in (vol, basis):
        if extra is not None:
            frame = frame.join(extra.with_columns(pl.col("asof_ts").cast(pl.Int64)), on="asof_ts", how="left")
    state = typed(frame, STATE_SCHEMA).with_columns(pl.lit(SPOT_SOURCE_COINBASE).alias("spot_source"))
    if index_prints is None or index_prints.height == 0:
        return state
    return _with_index_spot(state, index_prints, round(index_max_age_s * 1000), round(index_since_s * 1000))


def _with_index_spot(state: pl.DataFrame, index_prints: pl.DataFrame, max_age_ms: int, since_ms: int) -> pl.DataFrame:
    """Replace the spot of the as-of times with a fresh, established index print by that print (see market_state)."""
    prints = (
        index_prints.select(pl.col("ts").cast(pl.Int64).alias("index_ts"), pl.col("price").cast(pl.Float64))
        .filter(pl.col("price").is_finite() & (pl.col("price") > 0))
        .sort("index_ts")
    )
    asofs = state.select("asof_ts").sort("asof_ts")
    latest = asofs.join_asof(prints, left_on="asof_ts", right_on="index_ts", strategy="backward",
                             tolerance=max_age_ms)
    earlier = (
        asofs.with_columns((pl.col("asof_ts") - since_ms).alias("since_ts"))
        .join_asof(prints.select(pl.col("index_ts").alias("earlier_ts")), left_on="since_ts", right_on="earlier_ts",
                   strategy="backward", tolerance=max_age_ms)
        .select("asof_ts", "earlier_ts")
    )
    use = pl.col("index_ts").is_not_null() & pl.col("earlier_ts").is_not_null()
    return (
        state.join(latest, on="asof_ts", how="left")
        .join(earlier, on="asof_ts", how="left")
        .with_columns(
            pl.when(use).then(pl.col("price")).otherwise(pl.col("spot_usd")).alias("spot_usd"),
            pl.when(use).then(pl.col("index_ts")).otherwise(pl.col("spot_ts")).alias("spot_ts"),
            pl.when(use).then(0.0).otherwise(pl.col("basis_usd")).alias("basis_usd"),
            pl.when(use).then(0.0).otherwise(pl.col("basis_std_usd")).alias("basis_std_usd"),
            pl.when(use).then(pl.lit(BASIS_STATUS_SPOT_IS_INDEX)).otherwise(pl.col("basis_status"))
            .alias("basis_status"),
            pl.when(use).then(pl.lit(SPOT_SOURCE_INDEX)).otherwise(pl.col("spot_source")).alias("spot_source"),
        )
        .select(list(STATE_SCHEMA))
    )


def _universe(markets: pl.DataFrame, quotes: pl.DataFrame, asofs: pl.DataFrame, params: EdgeParams) -> pl.LazyFrame:
    """(asof, market) pairs: markets open by then and not long expired, plus quotes of unknown markets."""
    report_expired_ms = round((params.expired_tolerance_s + params.report_expired_s) * 1000)
    asof = pl.col("asof_ts")
    pairs = (
        asofs.lazy()
        .join(markets.lazy().with_columns(pl.lit(True).alias("known_market")), how="cross")
        .filter(
            (pl.col("open_ts").is_null() | (pl.col("open_ts") <= asof))
            & (pl.col("close_ts").is_null() | (pl.col("close_ts") >= asof - report_expired_ms))
        )
    )
    orphans = (
        quotes.lazy()
        .select("asof_ts", "market_ticker")
        .join(markets.lazy().select("market_ticker"), on="market_ticker", how="anti")
        .with_columns(pl.lit(False).alias("known_market"))
    )
    return pl.concat([pairs, orphans], how="diagonal")


def compute_edges(
    markets: pl.DataFrame,
    quotes: pl.DataFrame,
    state: pl.DataFrame,
    *,
    prints: pl.DataFrame | None = None,
    index_prints: pl.DataFrame | None = None,
    books: pl.DataFrame | None = None,
    params: EdgeParams | None = None,
    grids: PriceGrids | None = None,
) -> pl.DataFrame:
    """Evaluate every (as-of time, market) pair; return the edges frame (`EDGE_COLUMNS`), one row per pair.

    `grids`: `PriceGrids.of(price_grids(markets))` when the caller keeps it across calls (a live loop, per
    catalog read); computed here otherwise.
    """
    params = params or EdgeParams()
    markets = typed(markets, MARKET_SCHEMA)
    # Counting distinct tickers costs a tenth of `unique` (10k markets: 0.12 against 1.2 ms), and a catalog read
    # has none twice.
    if markets["market_ticker"].n_unique() < markets.height:
        markets = markets.unique("market_ticker", keep="last")
    quotes = typed(quotes, QUOTE_SCHEMA)
    state = (
        typed(state, STATE_SCHEMA)
        .with_columns(pl.col("spot_source").fill_null(SPOT_SOURCE_COINBASE))
        .unique("asof_ts", keep="last")
    )
    split = grids if grids is not None else PriceGrids.of(price_grids(markets))
    basis = pl.col("basis_usd").fill_null(0.0)
    # Markets of one grid range are checked in the query; the rare ones of several by the general match.
    joined = (
        _universe(markets, quotes, state.select("asof_ts"), params)
        .join(state.lazy(), on="asof_ts", how="left")
        .join(quotes.lazy(), on=["asof_ts", "market_ticker"], how="left")
        .join(split.single.lazy().with_columns(pl.lit(True).alias("_grid")), on="market_ticker", how="left")
    )
    is_off_grid = pl.col("_grid").fill_null(False) & off_grid(pl.col("start_u"), pl.col("end_u"), pl.col("step_u"))
    if split.several.height:
        several = off_grid_rows(quotes, PriceGrids(split.single.clear(), split.several))
        joined = joined.join(several.lazy().with_columns(pl.lit(True).alias("_off_several")),
                             on=["asof_ts", "market_ticker"], how="left")
        is_off_grid = is_off_grid | pl.col("_off_several").fill_null(False)
    joined = (
        joined.with_columns(is_off_grid.alias("off_grid"))
        .drop("_grid", "start_u", "end_u", "step_u", "_off_several", strict=False)
        .with_columns(
            # One book: a YES bid is a NO ask at 100 − price and vice versa (fills a side the quote lacks).
            pl.coalesce("yes_bid_cents", 100.0 - pl.col("no_ask_cents")).alias("yes_bid_cents"),
            pl.coalesce("yes_ask_cents", 100.0 - pl.col("no_bid_cents")).alias("yes_ask_cents"),
        )
        .with_columns(
            (pl.col("spot_usd") + basis).alias("model_spot_usd"),
            ((pl.col("close_ts") - pl.col("asof_ts")) / 1000.0).alias("time_to_close_s"),
            ((pl.col("close_ts") - pl.col("spot_ts")) / 1000.0).alias("horizon_s"),
            pl.coalesce(pl.col("fee_type"), pl.lit(params.default_fee_type, pl.Categorical)).alias("fee_type"),
            pl.coalesce(pl.col("fee_multiplier"), pl.lit(params.default_fee_multiplier)).alias("fee_multiplier"),
            pl.lit(float(params.contracts)).alias("contracts"),
            ((pl.col("yes_bid_cents") + pl.col("yes_ask_cents")) / 200.0).alias("p_market"),
        )
        .sort("asof_ts", "market_ticker")
    )
    pairs = markets.height * state.height
    engine: Literal["in-memory", "streaming"] = "streaming" if pairs >= _STREAMING_FROM_ROWS else "in-memory"
    gated = select_band(gate(joined, params), params).collect(engine=engine)

    in_window = _in_window(params)
    needs_prints = gated.filter(pl.col("skip_reason").is_null() & in_window).select(
        pl.col("spot_ts").alias("info_ts"), "close_ts", "spot_source"
    )
    fixed_parts = []
    # The fixed prints come from the spot's own source: index prints (settlement units) or Coinbase ticks.
    for source, ticks in ((SPOT_SOURCE_COINBASE, prints), (SPOT_SOURCE_INDEX, index_prints)):
        keys = needs_prints.filter(pl.col("spot_source") == source)
        if params.settlement == "average" and keys.height and ticks is not None:
            fixed_parts.append(
                fixed_window_prints(
                    ticks, keys, window_prints=params.window_prints, print_interval_s=params.print_interval_s
                ).with_columns(pl.lit(source).alias("spot_source"))
            )
    if fixed_parts:
        fixed = pl.concat(fixed_parts).rename({"info_ts": "spot_ts"})
        gated = gated.join(fixed, on=["spot_ts", "close_ts", "spot_source"], how="left")
    else:
        gated = gated.with_columns(
            pl.lit(None, pl.Float64).alias("fixed_sum_usd"), pl.lit(None, pl.Int64).alias("fixed_count")
        )
    staged = gated.lazy().with_columns(
        # Coinbase proxies move to index units like the spot (with the index as spot the basis is 0).
        (pl.col("fixed_sum_usd") + pl.col("fixed_count") * basis).alias("fixed_sum_usd"),
    )
    result = (
        apply_stages(price(staged, params), _outcome_stages(params))
        .select(EDGE_COLUMNS)
        .with_columns(pl.col(CATEGORICAL_MARKET_COLUMNS).cast(pl.String))
        .sort("asof_ts", "market_ticker")
        .collect(engine=engine)
    )
    return result if books is None else with_depth(result, books, params)


_DEPTH_COLUMNS = {"depth_filled_yes": pl.Float64, "depth_ev_yes_dollars": pl.Float64, "depth_filled_no": pl.Float64,
                  "depth_ev_no_dollars": pl.Float64}


def _in_window(params: EdgeParams) -> pl.Expr:
    """A print is fixed once its second has passed: from the first print on (not from the window's open, a
    second earlier) the fixed prints are needed; before it none is fixed and Σ = 0."""
    offset_ms = first_print_offset_ms(params.window_prints, params.print_interval_s)
    return pl.col("spot_ts") >= pl.col("close_ts") - offset_ms


@functools.lru_cache(maxsize=64)
def _outcome_stages(params: EdgeParams) -> Stages:
    """After pricing: the post-pricing skip reasons, priced-only columns nulled on skipped rows, the per-event
    Kelly cap, the model version and (filled by `with_depth`) null depth columns; built once per setting."""
    in_window = _in_window(params)
    sigma_ok = pl.col("sigma_annual").is_finite() & (pl.col("sigma_annual") >= 0)
    prints_missing = (
        in_window & pl.col("fixed_sum_usd").is_null() if params.settlement == "average" else pl.lit(False)
    )
    pending = pl.col("skip_reason").is_null()
    reason = (
        pl.when(pending & ~sigma_ok.fill_null(False))
        .then(pl.lit("sigma_not_ready"))
        .when(pending & prints_missing)
        .then(pl.lit("window_prints_missing"))
        .when(pending & (pl.col("p_model_raw").is_null() | (pl.col("ev_yes_dollars").is_null()
                                                          & pl.col("ev_no_dollars").is_null())))
        .then(pl.lit("invalid_edge"))
        .otherwise(pl.col("skip_reason"))
        .alias("skip_reason")
    )
    priced = pl.col("skip_reason").is_null()
    return (
        (reason,),
        tuple(pl.when(priced).then(pl.col(c)).alias(c) for c in _PRICED_ONLY),
        capped_event_exposure(params.event_exposure_cap, group=("asof_ts", "event_ticker")),
        (
            pl.lit(MODEL_VERSION).alias("model_version"),
            *(pl.lit(None, dtype).alias(name) for name, dtype in _DEPTH_COLUMNS.items()),
        ),
    )


def with_depth(edges: pl.DataFrame, books: pl.DataFrame | None, params: EdgeParams) -> pl.DataFrame:
    """`edges` (`EDGE_COLUMNS`, sorted) with the depth-aware EV of the order size for priced markets with a known
    book, null otherwise; replaces any depth columns `edges` has. Only priced rows read `books`, so a caller may
    pass just their books: `compute_edges(…, books=None)` then `with_depth(edges, books of the priced markets)`."""
    columns = _DEPTH_COLUMNS
    edges = edges.drop(*columns, strict=False)
    return _with_depth(edges, books, params).select(EDGE_COLUMNS).sort("asof_ts", "market_ticker")


def _with_depth(edges: pl.DataFrame, books: pl.DataFrame | None, params: EdgeParams) -> pl.DataFrame:
    columns = _DEPTH_COLUMNS
    priced = edges.filter(pl.col("skip_reason").is_null())
    if books is None or books.height == 0 or priced.height == 0:
        return edges.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in columns.items())
    depth = depth_ev(book_asks(books), priced, params.contracts, rounding=params.fee_rounding)
    wide = depth.pivot(on="side", index=list(BOOK_KEY), values=["filled_contracts", "ev_dollars"])
    renamed = {f"filled_contracts_{s}": f"depth_filled_{s}" for s in ("yes", "no")}
    renamed |= {f"ev_dollars_{s}": f"depth_ev_{s}_dollars" for s in ("yes", "no")}
    wide = wide.rename({k: v for k, v in renamed.items() if k in wide.columns})
    wide = wide.with_columns(pl.lit(None, dtype).alias(n) for n, dtype in columns.items() if n not in wide.columns)
    return edges.join(wide.select(*BOOK_KEY, *columns), on=list(BOOK_KEY), how="left")
