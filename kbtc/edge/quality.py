"""Quote data-quality checks: crossed or locked books and prices off the market's tick grid.

Price grids come per market from `price_ranges` (`[{"start","end","step"}]` in dollar strings) or, when that is
absent, from the documented `price_level_structure` names (kalshi_api.md §4: `linear_cent` $0.01,
`deci_cent` $0.001, `tapered_deci_cent` $0.001 below $0.10 and above $0.90, $0.01 between).
All grid arithmetic is in integers of $0.0001.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

QUOTE_PRICE_COLUMNS = ("yes_bid_cents", "yes_ask_cents", "no_bid_cents", "no_ask_cents")
_STRUCTURE_GRIDS: dict[str, list[tuple[int, int, int]]] = {
    "linear_cent": [(0, 10_000, 100)],
    "deci_cent": [(0, 10_000, 10)],
    "tapered_deci_cent": [(0, 1_000, 10), (1_000, 9_000, 100), (9_000, 10_000, 10)],
}
_RANGE_DTYPE = pl.List(pl.Struct({"start": pl.String, "end": pl.String, "step": pl.String}))


def price_grids(markets: pl.DataFrame) -> pl.DataFrame:
    """(market_ticker, start_u, end_u, step_u) rows of each market's tick grid, in $0.0001 units.

    Markets with neither a parsable `price_ranges` nor a known structure get no rows (their grid is unchecked).
    """
    schema = {"market_ticker": pl.String, "start_u": pl.Int64, "end_u": pl.Int64, "step_u": pl.Int64}
    names = markets.columns
    parts = []
    if "price_ranges" in names:
        ranges = (
            markets.select("market_ticker", "price_ranges")
            .filter(pl.col("price_ranges").is_not_null())
            .with_columns(pl.col("price_ranges").str.json_decode(_RANGE_DTYPE).alias("r"))
            .explode("r")
            .unnest("r")
            .select(
                "market_ticker",
                *[
                    (pl.col(field).cast(pl.Float64, strict=False) * 10_000).round(0).cast(pl.Int64).alias(alias)
                    for field, alias in (("start", "start_u"), ("end", "end_u"), ("step", "step_u"))
                ],
            )
            .filter(pl.col("step_u") > 0)
        )
        parts.append(ranges)
    if "price_level_structure" in names:
        known = parts[0]["market_ticker"].unique() if parts else pl.Series([], dtype=pl.String)
        table = pl.DataFrame(
            [(name, s, e, st) for name, grid in _STRUCTURE_GRIDS.items() for s, e, st in grid],
            schema=["price_level_structure", "start_u", "end_u", "step_u"],
            orient="row",
        )
        by_name = (
            markets.select("market_ticker", "price_level_structure")
            .filter(~pl.col("market_ticker").is_in(known.implode()))
            .join(table, on="price_level_structure", how="inner")
            .drop("price_level_structure")
        )
        parts.append(by_name)
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat([p.cast(schema) for p in parts])  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class PriceGrids:
    """`price_grids` split for the off-grid check: `single` holds the markets of one range (most: `linear_cent`),
    whose four prices are checked in place, column by column; `several` every range of the markets of more,
    matched one row per price (~6× the cost per quote). A live loop computes it once per catalog read."""

    single: pl.DataFrame
    several: pl.DataFrame

    @classmethod
    def of(cls, grids: pl.DataFrame) -> PriceGrids:
        """Split `price_grids(markets)`."""
        one = pl.len().over("market_ticker") == 1
        return cls(single=grids.filter(one), several=grids.filter(~one))


def off_grid(start_u: pl.Expr, end_u: pl.Expr, step_u: pl.Expr) -> pl.Expr:
    """Whether any quote price column is off the one-range grid [start_u, end_u] step step_u ($0.0001 units).

    0 and 100 ¢ are always allowed and a null price is never off; a null bound (an unparsable range) puts every
    other price off the grid, as the general match does.
    """
    off = []
    for name in QUOTE_PRICE_COLUMNS:
        cents = pl.col(name)
        units = cents * 100.0
        u = units.round(0).cast(pl.Int64, strict=False)  # NaN: null, and NaN is never checked (not < 100)
        on_grid = ((u >= start_u) & (u <= end_u) & (((u - start_u) % step_u) == 0)
                   & ((units - units.round(0)).abs() < 1e-6))
        off.append(cents.is_not_null() & (cents > 0) & (cents < 100) & ~on_grid.fill_null(False))
    return pl.any_horizontal(off)


def off_grid_rows(quotes: pl.DataFrame, grids: pl.DataFrame | PriceGrids) -> pl.DataFrame:
    """(asof_ts, market_ticker) of quotes with any price off the market's grid (0 and 100 ¢ always allowed)."""
    key = ["asof_ts", "market_ticker"]
    split = grids if isinstance(grids, PriceGrids) else PriceGrids.of(grids)
    in_place = (
        quotes.lazy()
        .select(*key, *QUOTE_PRICE_COLUMNS)
        .join(split.single.lazy(), on="market_ticker", how="inner")
        .filter(off_grid(pl.col("start_u"), pl.col("end_u"), pl.col("step_u")))
        .select(key)
        .collect()
    )
    if split.several.height == 0:
        return in_place.unique()
    several = split.several.select(pl.col("market_ticker").unique())
    multi = _off_grid_rows_any(quotes.join(several, on="market_ticker", how="semi"), split.several)
    return pl.concat([in_place, multi]).unique()


def _off_grid_rows_any(quotes: pl.DataFrame, grids: pl.DataFrame) -> pl.DataFrame:
    """`off_grid_rows` for grids of any number of ranges: one row per price, matched against every range."""
    key = ["asof_ts", "market_ticker"]
    prices = (
        quotes.select(*key, *QUOTE_PRICE_COLUMNS)
        .unpivot(index=key, on=list(QUOTE_PRICE_COLUMNS), value_name="cents")
        .filter(pl.col("cents").is_not_null() & (pl.col("cents") > 0) & (pl.col("cents") < 100))
        .with_columns((pl.col("cents") * 100.0).round(0).cast(pl.Int64).alias("u"),
                      ((pl.col("cents") * 100.0) - (pl.col("cents") * 100.0).round(0)).abs().alias("_frac"))
        .join(grids.select(pl.col("market_ticker").unique()), on="market_ticker", how="semi")
    )
    if prices.height == 0:
        return pl.DataFrame(schema={"asof_ts": pl.Int64, "market_ticker": pl.String})
    matched = (
        prices.join(grids, on="market_ticker", how="inner")
        .filter(
            (pl.col("u") >= pl.col("start_u"))
            & (pl.col("u") <= pl.col("end_u"))
            & (((pl.col("u") - pl.col("start_u")) % pl.col("step_u")) == 0)
            & (pl.col("_frac") < 1e-6)
        )
        .select(*key, "variable")
        .unique()
    )
    return prices.join(matched, on=[*key, "variable"], how="anti").select(key).unique()


def crossed(yes_bid: pl.Expr, yes_ask: pl.Expr, no_bid: pl.Expr, no_ask: pl.Expr) -> pl.Expr:
    """A bid above the ask on either side, or YES ask + NO ask below 100 ¢ (the original's test)."""
    return (
        (yes_bid > yes_ask).fill_null(False)
        | (no_bid > no_ask).fill_null(False)
        | ((yes_ask + no_ask) < 100.0).fill_null(False)
    )


def locked(yes_bid: pl.Expr, yes_ask: pl.Expr, no_bid: pl.Expr, no_ask: pl.Expr) -> pl.Expr:
    """A bid equal to the ask on either side (a book that would have matched: stale or bad data)."""
    live_yes = (yes_bid > 0) & (yes_ask < 100)
    live_no = (no_bid > 0) & (no_ask < 100)
    return ((yes_bid == yes_ask) & live_yes).fill_null(False) | ((no_bid == no_ask) & live_no).fill_null(False)
