"""Wire-value conversions shared by every Kalshi parser: prices, counts, times (kalshi_api.md §4).

- Prices arrive as `*_dollars` fixed-point strings with up to 4 decimals (sub-penny ticks exist, e.g.
  KXBTC15M's `tapered_deci_cent` grid: `"0.9530"`). We store **cents** quantised to 0.01 ¢, i.e. an exact
  integer count of $0.0001 units divided by 100. A string finer than $0.0001 is an error, never rounded.
- The integer-cent fields (`yes_bid`, `price`, ...) were removed on 2026-03-12; they are read only when the
  `*_dollars` twin is absent (legacy payloads and stored history).
- Counts arrive as `*_fp` strings with 2 decimals (fractional contracts exist); legacy integers are accepted.
- Times: ISO-8601 strings (`close_time`), epoch seconds (`ts`, lifecycle `open_ts`) or milliseconds (`ts_ms`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

UNITS_PER_DOLLAR = 10_000  # the venue's resolution: $0.0001
_SECONDS_BELOW = 100_000_000_000  # an integer epoch below 1e11 is in seconds (1e11 ms is 1973, 1e11 s is year 5138)
_MAX_EPOCH = 1e15  # beyond any epoch in ms (year 33658): a larger "time" is garbage, not a moment


class FieldError(ValueError):
    """A field is present but cannot be converted; the message names the field."""


def price_units(value: Any, field: str = "price") -> int | None:
    """A `*_dollars` value as an integer number of $0.0001; None when absent or empty."""
    if value is None or value == "":
        return None
    try:
        scaled = float(value) * UNITS_PER_DOLLAR
    except (TypeError, ValueError):
        raise FieldError(f"{field}: not a number: {value!r}") from None
    if not math.isfinite(scaled):
        raise FieldError(f"{field}: not finite: {value!r}")
    units = round(scaled)
    if abs(scaled - units) > 1e-6:
        raise FieldError(f"{field}: finer than $0.0001: {value!r}")
    if not 0 <= units <= UNITS_PER_DOLLAR:
        raise FieldError(f"{field}: outside $0-$1: {value!r}")
    return units


def dollars_to_cents(value: Any, field: str = "price") -> float | None:
    """A `*_dollars` string as cents quantised to 0.01 ¢ (`"0.9530"` → 95.3)."""
    units = price_units(value, field)
    return None if units is None else units / 100


def legacy_cents(value: Any, field: str = "price") -> float | None:
    """A removed integer-cent field (pre 2026-03-12) as cents."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        cents = float(value)
    except (TypeError, ValueError):
        raise FieldError(f"{field}: not a number: {value!r}") from None
    if not 0 <= cents <= 100:  # also false for NaN
        raise FieldError(f"{field}: outside 0-100 cents: {value!r}")
    return round(cents * 100) / 100


def price_cents(payload: Mapping[str, Any], dollars_key: str, legacy_key: str | None = None) -> float | None:
    """The price at `dollars_key` in cents, else the legacy integer-cent `legacy_key`, else None.

    The `*_dollars` check is inlined (same rules as `price_units`): this runs for every ticker frame.
    """
    value = payload.get(dollars_key)
    if value is None or value == "":
        return legacy_cents(payload.get(legacy_key), legacy_key) if legacy_key is not None else None
    try:
        scaled = float(value) * UNITS_PER_DOLLAR
        units = round(scaled)
    except (TypeError, ValueError, OverflowError):  # OverflowError: "1e400" is infinite
        return dollars_to_cents(value, dollars_key)  # raises with the precise reason
    if abs(scaled - units) > 1e-6 or not 0 <= units <= UNITS_PER_DOLLAR:
        return dollars_to_cents(value, dollars_key)  # raises with the precise reason
    return units / 100


def count(payload: Mapping[str, Any], fp_key: str, legacy_key: str | None = None) -> float | None:
    """A contract count from the `*_fp` string, else the legacy integer field, else None."""
    value = payload.get(fp_key)
    key = fp_key
    if type(value) is str and value:
        try:
            out = float(value)
        except ValueError:
            raise FieldError(f"{key}: not a number: {value!r}") from None
        if not math.isfinite(out):
            raise FieldError(f"{key}: not finite: {value!r}")
        return out
    if (value is None or value == "") and legacy_key is not None:
        value, key = payload.get(legacy_key), legacy_key
    if value is None or value == "" or isinstance(value, bool):
        return None
    return number(value, key)


def number(value: Any, field: str) -> float | None:
    """A plain number (strike, expiration value) from a number or numeric string; None when absent/empty."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise FieldError(f"{field}: not a number: {value!r}") from None
    if not math.isfinite(out):
        raise FieldError(f"{field}: not finite: {value!r}")
    return out


def time_ms(value: Any, field: str = "time") -> int | None:
    """Epoch ms from an ISO-8601 string or an epoch number (seconds below 1e11, else ms); None if absent."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) > _MAX_EPOCH:
            raise FieldError(f"{field}: not a time: {value!r}")
        return int(value * 1000) if abs(value) < _SECONDS_BELOW else int(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None:
            # A time without an offset is UTC: the venue never sends local times.
            return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)
        try:
            return time_ms(float(value), field)
        except ValueError:
            raise FieldError(f"{field}: not a time: {value!r}") from None
    raise FieldError(f"{field}: not a time: {value!r}")


def first_time_ms(payload: Mapping[str, Any], *keys: str) -> int | None:
    """The first of `keys` that holds a time, as epoch ms."""
    for key in keys:
        value = time_ms(payload.get(key), key)
        if value is not None:
            return value
    return None


def text(value: Any) -> str | None:
    """A non-empty string, else None."""
    if value is None:
        return None
    out = str(value)
    return out if out else None


def as_json(value: Any) -> str | None:
    """Compact JSON of a nested value (None stays None)."""
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


def raw_json(payload: Mapping[str, Any]) -> str:
    """The payload as compact JSON: every field, including ones we do not read, is kept."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
