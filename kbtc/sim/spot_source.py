"""The price interface between the simulator's price process and its venue servers.

The Kalshi side settles on a BRTI-like index; the Coinbase side quotes a price that differs from the index
by a slowly varying basis plus tick noise. Both servers read one deterministic path through this protocol,
so a seeded simulator serves the same history to every client, including history before it started
(REST candle backfill).
"""

from __future__ import annotations

from typing import Protocol


class SpotSource(Protocol):
    """A deterministic BTC-USD path, defined for any time at or before the simulator's "now"."""

    def index_usd(self, ts_ms: int) -> float:
        """The settlement index (BRTI-like) print in force at `ts_ms` (1 Hz: constant within a second)."""
        ...

    def coinbase_usd(self, ts_ms: int) -> float:
        """The Coinbase BTC-USD trade price at `ts_ms`: index + basis + tick noise."""
        ...
