"""Import the CSV files users commonly have: Kalshi market lists, Kalshi quote histories, spot trades, candles.

Formats (header row required; extra columns ignored; see docs/RESEARCH.md):

| kind | required columns | optional |
|---|---|---|
| `markets` | ticker, close_time, strike_type | event_ticker, series_ticker, open_time, floor_strike, |
|  |  | cap_strike, result, expiration_value |
| `quotes` | ts, ticker, yes_bid, yes_ask | no_bid, no_ask |
| `spot` | ts, price | product_id |
| `candles` | ts, open, high, low, close | volume, product_id, granularity_s |
| `settlements` | ticker, result | expiration_value, settled_time |

- Times: ISO-8601 (`2026-11-25T17:00:00Z`) or epoch seconds / milliseconds / nanoseconds (told apart by magnitude).
- Kalshi prices: dollars (`0.4250`) or cents (`42.5`), chosen with `price_unit` — `auto` reads dollars when every
  price in the file is ≤ 1.
- Settlements update markets already in the catalog (a row naming an unknown market is rejected): result,
  expiration value and settled time; a blank optional value keeps the stored one.
- Every row is validated as a whole column at once (Polars); bad rows are reported with their line number
  (the header is line 1) and kept out; good rows are upserted idempotently (re-importing a file changes nothing).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl
from sqlalchemy import Engine, text

from kbtc.db.engine import write_transaction
from kbtc.db.store import read_frame, upsert

ImportKind = Literal["markets", "quotes", "spot", "candles", "settlements"]
PriceUnit = Literal["auto", "dollars", "cents"]
STRIKE_TYPES = ("greater", "greater_or_equal", "less", "less_or_equal", "between", "functional", "custom", "structured")
REQUIRED: dict[str, tuple[str, ...]] = {
    "markets": ("ticker", "close_time", "strike_type"),
    "quotes": ("ts", "ticker", "yes_bid", "yes_ask"),
    "spot": ("ts", "price"),
    "candles": ("ts", "open", "high", "low", "close"),
    "settlements": ("ticker", "result"),
}
IMPORT_KINDS = tuple(REQUIRED)
_LINE = "__line"


class ImportFormatError(ValueError):
    """The file as a whole cannot be imported (missing columns, unreadable)."""


@dataclass(slots=True)
class ImportResult:
    """Rows read, rows written, and the rejected rows with line numbers and reasons."""

    kind: str
    rows_read: int = 0
    rows_written: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def _float(expr: pl.Expr) -> pl.Expr:
    """A numeric text column as Float64; unparseable, NaN and infinite values become null (and are rejected)."""
    number = expr.cast(pl.Float64, strict=False)
    return pl.when(number.is_finite()).then(number)


def _ts_ms(column: str) -> pl.Expr:
    """Parse ISO-8601 or epoch s/ms/ns into epoch ms (null when unparseable)."""
    raw = pl.col(column).str.strip_chars()
    number = _float(raw)
    from_number = (
        pl.when(number.abs() < 1e11)
        .then(number * 1000)
        .when(number.abs() < 1e14)
        .then(number)
        .otherwise(number / 1e6)
        .round(0)
        .cast(pl.Int64, strict=False)  # NaN, inf and times past year 292 billion become null (rejected)
    )
    parsed = raw.str.to_datetime(time_zone="UTC", strict=False, time_unit="ms").dt.epoch("ms")
    return pl.when(number.is_not_null()).then(from_number).otherwise(parsed)


def _validated(frame: pl.DataFrame, checks: list[tuple[pl.Expr, str]]) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    """Split rows into good ones and (line, reason) errors; a row fails on its first failing check."""
    reason = pl.lit(None, dtype=pl.String)
    for ok, message in reversed(checks):
        reason = pl.when(~ok.fill_null(False)).then(pl.lit(message)).otherwise(reason)
    marked = frame.with_columns(reason.alias("__reason"))
    bad = marked.filter(pl.col("__reason").is_not_null())
    errors = list(zip(bad[_LINE].to_list(), bad["__reason"].to_list(), strict=True))
    return marked.filter(pl.col("__reason").is_null()).drop("__reason"), errors


def _cents(column: str, unit: Literal["dollars", "cents"]) -> pl.Expr:
    value = _float(pl.col(column))
    return ((value * 100) if unit == "dollars" else value).round(2)


def _resolve_unit(frame: pl.DataFrame, columns: list[str], unit: PriceUnit) -> Literal["dollars", "cents"]:
    if unit != "auto":
        return unit
    values = pl.concat([frame[c].cast(pl.Float64, strict=False) for c in columns if c in frame.columns])
    values = values.filter(values.is_finite())
    peak = values.drop_nulls().max()
    return "dollars" if peak is None or float(peak) <= 1.0 else "cents"  # type: ignore[arg-type]


def _markets(frame: pl.DataFrame, now_ts: int) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    floor = _float(pl.col("floor_strike"))
    cap = _float(pl.col("cap_strike"))
    strike = pl.col("strike_type").str.strip_chars().str.to_lowercase()
    parsed = frame.with_columns(
        _ts_ms("close_time").alias("close_ts"),
        _ts_ms("open_time").alias("open_ts"),
        strike.alias("strike_type"),
        floor.alias("floor_strike"),
        cap.alias("cap_strike"),
        _float(pl.col("expiration_value")),
        pl.col("result").str.strip_chars().str.to_lowercase().replace("", None),
    )
    needs_floor = pl.col("strike_type").is_in(["greater", "greater_or_equal", "between"])
    needs_cap = pl.col("strike_type").is_in(["less", "less_or_equal", "between"])
    good, errors = _validated(
        parsed,
        [
            (pl.col("ticker").str.strip_chars().str.len_chars() > 0, "missing ticker"),
            (pl.col("close_ts").is_not_null(), "unparseable close_time"),
            (pl.col("strike_type").is_in(STRIKE_TYPES), "unknown strike_type"),
            (~needs_floor | pl.col("floor_strike").is_not_null(), "missing floor_strike"),
            (~needs_cap | pl.col("cap_strike").is_not_null(), "missing cap_strike"),
            (
                (pl.col("strike_type") != "between") | (pl.col("cap_strike") > pl.col("floor_strike")),
                "cap_strike not above floor_strike",
            ),
            (pl.col("result").is_null() | pl.col("result").is_in(["yes", "no"]), "result must be yes, no or empty"),
            (
                pl.col("open_time").str.strip_chars().replace("", None).is_null() | pl.col("open_ts").is_not_null(),
                "unparseable open_time",
            ),
        ],
    )
    ticker = pl.col("ticker").str.strip_chars()
    event = pl.coalesce(pl.col("event_ticker").replace("", None), ticker.str.replace(r"-[^-]*$", ""))
    rows = good.select(
        ticker.alias("market_ticker"),
        event.alias("event_ticker"),
        pl.coalesce(pl.col("series_ticker").replace("", None), event.str.replace(r"-.*$", "")).alias("series_ticker"),
        "strike_type",
        "floor_strike",
        "cap_strike",
        "open_ts",
        "close_ts",
        "result",
        "expiration_value",
        pl.when(pl.col("result").is_not_null()).then(pl.lit("finalized")).otherwise(pl.lit("active")).alias("status"),
        pl.lit(now_ts).alias("first_seen_ts"),
        pl.lit(now_ts).alias("updated_ts"),
        pl.struct(pl.all().exclude(_LINE)).map_elements(json.dumps, return_dtype=pl.String).alias("raw_json"),
    )
    return rows, errors


def _quotes(frame: pl.DataFrame, unit: PriceUnit, now_ts: int) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    price_columns = ["yes_bid", "yes_ask", "no_bid", "no_ask"]
    resolved = _resolve_unit(frame, price_columns, unit)
    parsed = frame.with_columns(
        _ts_ms("ts").alias("quote_ts"),
        *(_cents(c, resolved).alias(f"{c}_cents") for c in price_columns),
    )
    in_range = [
        pl.col(f"{c}_cents").is_null() | pl.col(f"{c}_cents").is_between(0, 100) for c in price_columns
    ]
    good, errors = _validated(
        parsed,
        [
            (pl.col("ticker").str.strip_chars().str.len_chars() > 0, "missing ticker"),
            (pl.col("quote_ts").is_not_null(), "unparseable ts"),
            (pl.all_horizontal(in_range), "price outside 0–100 cents"),
            (pl.col("yes_bid_cents").is_not_null() | pl.col("yes_ask_cents").is_not_null(), "no prices"),
            (
                pl.col("yes_bid_cents").is_null()
                | pl.col("yes_ask_cents").is_null()
                | (pl.col("yes_bid_cents") <= pl.col("yes_ask_cents")),
                "yes_bid above yes_ask",
            ),
        ],
    )
    rows = good.select(
        pl.col("ticker").str.strip_chars().alias("market_ticker"),
        "quote_ts",
        pl.col("quote_ts").alias("received_ts"),
        pl.lit("import").alias("source"),
        "yes_bid_cents",
        "yes_ask_cents",
        # A NO bid is a YES ask seen from the other leg: derive what the file lacks.
        pl.coalesce("no_bid_cents", 100 - pl.col("yes_ask_cents")).alias("no_bid_cents"),
        pl.coalesce("no_ask_cents", 100 - pl.col("yes_bid_cents")).alias("no_ask_cents"),
    )
    return rows, errors


def _spot(frame: pl.DataFrame, product_id: str) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    parsed = frame.with_columns(_ts_ms("ts").alias("tick_ts"), _float(pl.col("price")).alias("price"))
    good, errors = _validated(
        parsed,
        [(pl.col("tick_ts").is_not_null(), "unparseable ts"), (pl.col("price") > 0, "price missing or not positive")],
    )
    # Trades sharing a millisecond stay distinct: nanoseconds = ms × 1e6 + occurrence within that ms.
    rows = good.select(
        pl.coalesce(pl.col("product_id").replace("", None), pl.lit(product_id)).alias("product_id"),
        pl.lit("import").alias("source"),
        "tick_ts",
        (pl.col("tick_ts") * 1_000_000 + pl.int_range(pl.len()).over("tick_ts")).alias("venue_time_ns"),
        pl.col("tick_ts").alias("received_ts"),
        "price",
    )
    return rows, errors


def _candles(frame: pl.DataFrame, product_id: str, granularity_s: int) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    prices = ["open", "high", "low", "close"]
    parsed = frame.with_columns(
        _ts_ms("ts").alias("start_ts"),
        *(_float(pl.col(c)).alias(c) for c in [*prices, "volume"]),
    )
    good, errors = _validated(
        parsed,
        [
            (pl.col("start_ts").is_not_null(), "unparseable ts"),
            (pl.all_horizontal(pl.col(c) > 0 for c in prices), "price missing or not positive"),
            (
                (pl.col("low") <= pl.min_horizontal("open", "close"))
                & (pl.col("high") >= pl.max_horizontal("open", "close")),
                "low/high do not bracket open/close",
            ),
        ],
    )
    rows = good.select(
        pl.coalesce(pl.col("product_id").replace("", None), pl.lit(product_id)).alias("product_id"),
        pl.lit("import").alias("source"),
        pl.coalesce(pl.col("granularity_s").cast(pl.Int64, strict=False), pl.lit(granularity_s)).alias("granularity_s"),
        "start_ts",
        *prices,
        "volume",
        pl.col("start_ts").alias("received_ts"),
    )
    return rows, errors


def _settlements(engine: Engine, frame: pl.DataFrame, now_ts: int) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    known = read_frame(engine, "SELECT market_ticker FROM markets")["market_ticker"].to_list()
    parsed = frame.with_columns(
        pl.col("expiration_value").str.strip_chars().replace("", None).is_null().alias("__ev_blank"),
        pl.col("ticker").str.strip_chars(),
        pl.col("result").str.strip_chars().str.to_lowercase().alias("result"),
        pl.col("expiration_value").cast(pl.Float64, strict=False),
        _ts_ms("settled_time").alias("settled_ts"),
    )
    good, errors = _validated(
        parsed,
        [
            (pl.col("ticker").str.len_chars() > 0, "missing ticker"),
            (pl.col("ticker").is_in(known), "unknown market (import the catalog first)"),
            (pl.col("result").is_in(["yes", "no"]), "result must be yes or no"),
            (
                pl.col("expiration_value").is_not_null() | pl.col("__ev_blank"),
                "unparseable expiration_value",
            ),
            (
                pl.col("settled_time").str.strip_chars().replace("", None).is_null()
                | pl.col("settled_ts").is_not_null(),
                "unparseable settled_time",
            ),
        ],
    )
    rows = good.select(
        pl.col("ticker").alias("market_ticker"),
        "result",
        "expiration_value",
        "settled_ts",
        pl.lit("finalized").alias("status"),
        pl.lit(now_ts).alias("updated_ts"),
    )
    return rows, errors


def _update_settlements(engine: Engine, rows: pl.DataFrame) -> int:
    """Update existing markets (an UPDATE, not an upsert: a settlement never creates a catalog row)."""
    if rows.height == 0:
        return 0
    statement = text(
        "UPDATE markets SET result = :result, status = :status, updated_ts = :updated_ts, "
        "expiration_value = COALESCE(:expiration_value, expiration_value), "
        "settled_ts = COALESCE(:settled_ts, settled_ts) WHERE market_ticker = :market_ticker"
    )
    with write_transaction(engine) as conn:
        conn.execute(statement, rows.to_dicts())
    return rows.height


def import_csv(
    engine: Engine,
    kind: ImportKind,
    path: Path,
    *,
    now_ts: int,
    price_unit: PriceUnit = "auto",
    product_id: str = "BTC-USD",
    granularity_s: int = 60,
) -> ImportResult:
    """Validate and import one CSV file of `kind`; return counts and the rejected lines."""
    try:
        frame = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=True)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, OSError) as exc:
        raise ImportFormatError(f"{path}: cannot read CSV: {exc}") from None
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    missing = [c for c in REQUIRED[kind] if c not in frame.columns]
    if missing:
        raise ImportFormatError(f"{path}: {kind} CSV lacks column(s): {', '.join(missing)}")
    optional = {"event_ticker", "series_ticker", "open_time", "floor_strike", "cap_strike", "result",
                "expiration_value", "no_bid", "no_ask", "product_id", "volume", "granularity_s", "settled_time"}
    frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in optional - set(frame.columns))
    frame = frame.with_row_index(_LINE, offset=2)
    builders: dict[str, Callable[[], tuple[pl.DataFrame, list[tuple[int, str]]]]] = {
        "markets": lambda: _markets(frame, now_ts),
        "quotes": lambda: _quotes(frame, price_unit, now_ts),
        "spot": lambda: _spot(frame, product_id),
        "candles": lambda: _candles(frame, product_id, granularity_s),
        "settlements": lambda: _settlements(engine, frame, now_ts),
    }
    rows, errors = builders[kind]()
    if kind == "settlements":
        return ImportResult(kind, frame.height, _update_settlements(engine, rows), sorted(errors))
    table = {"markets": "markets", "quotes": "quotes", "spot": "spot_ticks", "candles": "spot_candles"}[kind]
    keep = ["floor_strike", "cap_strike", "open_ts", "result", "expiration_value"] if kind == "markets" else []
    update = [c for c in rows.columns if c not in ("market_ticker", "first_seen_ts")] if kind == "markets" else None
    written = upsert(engine, table, rows, keep_when_null=keep, update_columns=update) if rows.height else 0
    return ImportResult(kind, frame.height, written, sorted(errors))
