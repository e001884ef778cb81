"""The replay's vectorised path for the tape's commonest frame: a Kalshi `ticker` on our own tape.

A day of recording is ~10M ticker frames; decoding each through Python (`KalshiStream.handle_frame` →
`quote_from_ticker`) costs several µs a frame. Here a chunk of tape lines is matched at once (Polars' Rust
regex engine) against one strict pattern — our tape line holding a ticker frame in the venue's key order,
with every value of a plain shape (prices and sizes as decimal strings or null, times as integers, names
without escapes) — and the captured fields become the same `QuoteRecord` tuples through the same rules
(kbtc.venues.kalshi.parsing: $0.0001 grid, $0–$1, NO = complement of YES).

Why a pattern and not a JSON decoder: the pattern *is* the validation. A line it accepts is valid JSON whose
every read field has exactly one reading, so the captured text is what `orjson` would have produced; a line it
does not accept (another frame type, another key order, a legacy cent field, a number where a string is
expected, an escape, whitespace, an off-grid price…) goes through the per-frame parsers unchanged, so every
frame still follows the same parsing rules. Frames of a ticker are stateless in the parser (no sequence
check, no book), so taking them out of the per-frame stream changes nothing else; the caller keeps the
quotes in line order. Equivalence with the per-frame parser is tested on simulator recordings and on
generated and adversarial frames (tests/test_replay_batch.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

# Inside our tape line the frame is a JSON string: its quotes arrive escaped.
_Q = r'\\"'
_NAME = r'[A-Za-z0-9._:-]'  # tickers, ids, ISO times: no quote, no backslash, no escape
_DECIMAL = r"-?[0-9]+(?:\.[0-9]+)?"
_INT = r"-?[0-9]+"  # an Int64 where it fits (a longer one fails the cast: per-frame path)


def _string_field(key: str) -> str:
    """`,"key":"<decimal>"|""|null`, optional."""
    return f"(?:,{_Q}{key}{_Q}:(?:{_Q}(?:{_DECIMAL})?{_Q}|null))?"


def _name_field(key: str) -> str:
    return f"(?:,{_Q}{key}{_Q}:(?:{_Q}{_NAME}*{_Q}|null))?"


def _int_field(key: str, *, required: bool = False) -> str:
    return f",{_Q}{key}{_Q}:{_INT}" if required else f"(?:,{_Q}{key}{_Q}:{_INT})?"


# The `msg` keys in the venue's documented order (reference/kalshi_api.md, WS `ticker`), each optional except
# the market ticker and `ts_ms`; the simulator and the benchmark write a subsequence of it.
_MSG = (
    f"{_Q}market_ticker{_Q}:{_Q}{_NAME}+{_Q}"
    + _name_field("market_id")
    + _string_field("price_dollars")
    + _string_field("yes_bid_dollars")
    + _string_field("yes_ask_dollars")
    + _string_field("volume_fp")
    + _string_field("open_interest_fp")
    + _int_field("dollar_volume")
    + _int_field("dollar_open_interest")
    + _string_field("yes_bid_size_fp")
    + _string_field("yes_ask_size_fp")
    + _string_field("last_trade_size_fp")
    + _int_field("ts")
    + _int_field("ts_ms", required=True)
    + _name_field("time")
)
_SENT = _int_field("sending_ts_ms")
_FRAME = (
    f"\\{{{_Q}type{_Q}:{_Q}ticker{_Q}" + _int_field("sid") + _int_field("seq") + _SENT
    + f",{_Q}msg{_Q}:\\{{{_MSG}\\}}" + _SENT + "\\}"
)
TICKER_LINE = (
    f'^\\{{"received_ts":{_INT},"feed":"kalshi","connection_id":"{_NAME}*",'
    f'"raw":"{_FRAME}"\\}}\\s*$'
)
_PRICES = ("yes_bid", "yes_ask", "price")
_UNITS_PER_DOLLAR = 10_000


@dataclass(frozen=True, slots=True)
class TickerBatch:
    """The ticker lines of a chunk the vectorised path took: their line indices and their quote rows."""

    index: np.ndarray  # positions in the chunk, ascending
    received_ts: np.ndarray
    quotes: pl.DataFrame  # QuoteRecord columns, one row per index


def _cents(value: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(cents, valid): `price_cents` on a decimal string; invalid where the per-frame rule would raise."""
    scaled = value.cast(pl.Float64) * _UNITS_PER_DOLLAR
    units = scaled.round(0)
    valid = value.is_null() | (((scaled - units).abs() <= 1e-6) & (units >= 0) & (units <= _UNITS_PER_DOLLAR))
    # + 0.0: a "-0.00" price is 0 cents, as Python's round(-0.0) → 0 gives.
    return units / 100 + 0.0, valid


def quote_columns(fields: pl.DataFrame) -> pl.DataFrame:
    """Captured ticker fields → QuoteRecord columns and `valid` (False where the per-frame parser rejects)."""
    prices = {name: _cents(pl.col(name)) for name in _PRICES}
    yes_bid, yes_ask = prices["yes_bid"][0], prices["yes_ask"][0]
    sizes = {name: pl.col(name).cast(pl.Float64) for name in ("yes_bid_size", "yes_ask_size", "volume",
                                                              "open_interest")}
    # Where the per-frame parser raises instead: an off-grid or out-of-range price, a count too large to be
    # finite ("not finite"), an integer beyond Int64 (Python reads it; the batch path leaves it to Python).
    valid = [valid for _, valid in prices.values()]
    valid += [pl.col(name).is_null() | size.is_finite() for name, size in sizes.items()]
    valid += [pl.col(name).cast(pl.Int64, strict=False).is_not_null() for name in ("ts_ms", "received_ts")]
    return fields.select(
        pl.col("market_ticker"),
        pl.col("ts_ms").cast(pl.Int64, strict=False).alias("quote_ts"),
        pl.col("received_ts").cast(pl.Int64, strict=False),
        pl.lit("ws").alias("source"),
        yes_bid.alias("yes_bid_cents"),
        yes_ask.alias("yes_ask_cents"),
        ((10_000 - (yes_ask * 100).round(0)) / 100 + 0.0).alias("no_bid_cents"),
        ((10_000 - (yes_bid * 100).round(0)) / 100 + 0.0).alias("no_ask_cents"),
        sizes["yes_bid_size"].alias("yes_bid_size"),
        sizes["yes_ask_size"].alias("yes_ask_size"),
        prices["price"][0].alias("last_price_cents"),
        sizes["volume"].alias("volume"),
        pl.lit(None, pl.Float64).alias("volume_24h"),
        sizes["open_interest"].alias("open_interest"),
        pl.all_horizontal(valid).alias("valid"),
    )


def _text_or_none(line: bytes) -> str | None:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def lines_text(lines: list[bytes]) -> pl.Series:
    """Tape lines as text; a line that is not UTF-8 is null (the per-frame reader rejects it)."""
    try:
        return pl.Series(lines, dtype=pl.Binary).cast(pl.String)
    except pl.exceptions.ComputeError:  # some line is not UTF-8: find which, in Python (rare)
        return pl.Series([_text_or_none(line) for line in lines], dtype=pl.String)


def _extract(key: str, value: str) -> str:
    """An unanchored single-capture pattern for one field; only run on lines the full pattern accepted, where
    every key occurs once (the key order is fixed) and no value contains a quote."""
    return f"{_Q}{key}{_Q}:{value}"


_EXTRACTS: dict[str, str] = {
    "received_ts": f'^\\{{"received_ts":({_INT})',
    "market_ticker": _extract("market_ticker", f"{_Q}({_NAME}+){_Q}"),
    "ts_ms": _extract("ts_ms", f"({_INT})"),
    **{name: _extract(key, f"{_Q}({_DECIMAL}){_Q}") for name, key in (
        ("price", "price_dollars"), ("yes_bid", "yes_bid_dollars"), ("yes_ask", "yes_ask_dollars"),
        ("volume", "volume_fp"), ("open_interest", "open_interest_fp"), ("yes_bid_size", "yes_bid_size_fp"),
        ("yes_ask_size", "yes_ask_size_fp"),
    )},
}


def ticker_batch(lines: pl.Series) -> TickerBatch:
    """The lines of `lines` (tape lines as text, null where not UTF-8) the vectorised path takes, parsed.

    The full pattern is a plain match (a DFA, no captures); the fields are then captured one short pattern at
    a time, which is several times cheaper than one pattern with a dozen optional groups.
    """
    frame = (
        pl.DataFrame({"line": lines})
        .with_row_index("index")
        .filter(pl.col("line").str.contains(TICKER_LINE))
        .select("index", *(pl.col("line").str.extract(pattern, 1).alias(name) for name, pattern in _EXTRACTS.items()))
    )
    quotes = quote_columns(frame)
    keep = quotes["valid"]
    index = frame["index"].filter(keep).to_numpy().astype(np.int64)
    quotes = quotes.filter(keep).drop("valid")
    return TickerBatch(index, quotes["received_ts"].to_numpy(), quotes)
