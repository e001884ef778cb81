"""How Coinbase writes numbers and times on the wire (`reference/coinbase_api.md` §1.3–§1.5, §2).

- Advanced Trade sends every number as a decimal string, without trailing zeros ("15460", "0.3").
- Envelope timestamps are Go's RFC3339Nano: up to nine fractional digits, trailing zeros dropped.
- The heartbeat `current_time` is Go's `time.Time.String()`, monotonic reading included — not ISO 8601.
- The Exchange feed's `time` has exactly six fractional digits (microseconds).
"""

from __future__ import annotations

from datetime import UTC, datetime

NS_PER_S = 1_000_000_000


def decimal_str(value: float, places: int) -> str:
    """`value` rounded to `places` decimals, written without trailing zeros ("140.21", "15460", "0.3")."""
    text = f"{value:.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _utc_seconds(epoch_ns: int) -> tuple[str, int]:
    seconds, fraction_ns = divmod(epoch_ns, NS_PER_S)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S"), fraction_ns


def rfc3339_nano(epoch_ns: int) -> str:
    """Go's `time.RFC3339Nano` in UTC, e.g. `2023-02-09T20:19:35.39625135Z`."""
    whole, fraction_ns = _utc_seconds(epoch_ns)
    digits = f"{fraction_ns:09d}".rstrip("0")
    return f"{whole}.{digits}Z" if digits else f"{whole}Z"


def rfc3339_micro(epoch_ns: int) -> str:
    """The Exchange feed's time, microseconds always written: `2022-10-19T23:28:22.061769Z`."""
    whole, fraction_ns = _utc_seconds(epoch_ns)
    return f"{whole}.{fraction_ns // 1000:06d}Z"


def go_time_string(epoch_ns: int, monotonic_ns: int) -> str:
    """Go's `Time.String()` with its monotonic reading: `2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105`."""
    whole, fraction_ns = _utc_seconds(epoch_ns)
    digits = f"{fraction_ns:09d}".rstrip("0")
    clock = whole.replace("T", " ") + (f".{digits}" if digits else "")
    mono_s, mono_frac = divmod(monotonic_ns, NS_PER_S)
    return f"{clock} +0000 UTC m=+{mono_s}.{mono_frac:09d}"
