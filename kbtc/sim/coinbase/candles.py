"""Candles computed from the simulated tape: one-minute bars, aggregated to any coarser granularity.

A minute's bar samples the Coinbase price every `60 / samples_per_minute` seconds on the tick grid (open =
the first sample, close = the last), so its high/low are those of the sampled trades: a streamed tick may
lie a few cents outside them. Minutes without trades (`Tape.trading_minutes`) and minutes before the price
path's history are absent, as on Coinbase, where "intervals with no trades are simply absent" (§3.2).
Completed minutes are cached; the minute containing "now" is still forming and recomputed on each request.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import polars as pl

from kbtc.sim.coinbase.tape import MINUTE_MS, Tape

# Advanced Trade granularity enum → seconds (§3.1); the Exchange accepts only these seconds (§3.2).
ADVANCED_TRADE_GRANULARITY_S = {
    "ONE_MINUTE": 60,
    "FIVE_MINUTE": 300,
    "FIFTEEN_MINUTE": 900,
    "THIRTY_MINUTE": 1800,
    "ONE_HOUR": 3600,
    "TWO_HOUR": 7200,
    "FOUR_HOUR": 14400,
    "SIX_HOUR": 21600,
    "ONE_DAY": 86400,
}
EXCHANGE_GRANULARITY_S = frozenset({60, 300, 900, 3600, 21600, 86400})

CANDLE_COLUMNS = ("start_s", "low", "high", "open", "close", "volume")
_Ohlc = tuple[float, float, float, float]


def requested_count(start_s: int, end_s: int, granularity_s: int) -> int:
    """How many candles a `[start, end)` range implies (what both venues check against their limit)."""
    return max(0, math.ceil((end_s - start_s) / granularity_s))


class CandleBook:
    """Deterministic candles for any range within `history_s` before now."""

    def __init__(self, tape: Tape, *, samples_per_minute: int = 12, history_s: int = 2 * 86400) -> None:
        if samples_per_minute < 1 or 60_000 % samples_per_minute:
            raise ValueError("samples_per_minute must divide 60 000 ms")
        self.tape = tape
        self.sample_step_ms = 60_000 // samples_per_minute
        self.history_s = history_s
        self._complete: dict[int, _Ohlc | None] = {}

    def _minute_ohlc(self, minute_ms: int, now_ms: int) -> _Ohlc | None:
        times = np.arange(minute_ms, min(minute_ms + MINUTE_MS, now_ms + 1), self.sample_step_ms)
        if times.size == 0:
            return None
        try:
            prices = [round(self.tape.source.coinbase_usd(int(t)), 2) for t in times]
        except ValueError:  # before the start of the price path
            return None
        return prices[0], max(prices), min(prices), prices[-1]

    def _trading_minutes_in(self, first_minute_ms: int, last_minute_ms: int, now_ms: int) -> list[int]:
        oldest_ms = now_ms - now_ms % MINUTE_MS - self.history_s * 1000
        first = max(first_minute_ms - first_minute_ms % MINUTE_MS, oldest_ms)
        last = min(last_minute_ms, now_ms - now_ms % MINUTE_MS)
        minute_starts = np.arange(first, last + 1, MINUTE_MS, dtype=np.int64)
        for stale in [m for m in self._complete if m < oldest_ms]:
            del self._complete[stale]
        return minute_starts[self.tape.trading_minutes(minute_starts)].tolist()  # type: ignore[no-any-return]

    async def prefetch(self, first_minute_ms: int, last_minute_ms: int, now_ms: int, *, chunk: int = 50) -> None:
        """Compute the range's completed minutes into the cache, yielding to the event loop between chunks.

        A cold day of history is tens of thousands of price reads; done in one go it would hold up every
        feed on the loop (heartbeats included) for seconds.
        """
        todo = [m for m in self._trading_minutes_in(first_minute_ms, last_minute_ms, now_ms)
                if m + MINUTE_MS <= now_ms and m not in self._complete]
        for offset in range(0, len(todo), chunk):
            for minute_ms in todo[offset : offset + chunk]:
                self._complete[minute_ms] = self._minute_ohlc(minute_ms, now_ms)
            await asyncio.sleep(0)

    def minutes(self, first_minute_ms: int, last_minute_ms: int, now_ms: int) -> pl.DataFrame:
        """One-minute bars (`start_ms, open, high, low, close, volume`) of the trading minutes in the range."""
        minute_starts = self._trading_minutes_in(first_minute_ms, last_minute_ms, now_ms)
        starts: list[int] = []
        bars: list[_Ohlc] = []
        for minute_ms in minute_starts:
            complete = minute_ms + MINUTE_MS <= now_ms
            if complete and minute_ms in self._complete:
                bar = self._complete[minute_ms]
            else:
                bar = self._minute_ohlc(minute_ms, now_ms)
                if complete:
                    self._complete[minute_ms] = bar
            if bar is not None:
                starts.append(minute_ms)
                bars.append(bar)
        volumes = self.tape.minute_volumes_btc(np.asarray(starts, dtype=np.int64))
        # The forming minute has traded only part of its volume so far.
        elapsed = np.clip((now_ms - np.asarray(starts, dtype=np.int64)) / MINUTE_MS, 0.0, 1.0)
        return pl.DataFrame(
            {
                "start_ms": starts,
                "open": [b[0] for b in bars],
                "high": [b[1] for b in bars],
                "low": [b[2] for b in bars],
                "close": [b[3] for b in bars],
                "volume": np.round(volumes * elapsed, 8) if starts else [],
            },
            schema={"start_ms": pl.Int64, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64,
                    "close": pl.Float64, "volume": pl.Float64},
        )

    def candles(self, *, start_s: int, end_s: int, granularity_s: int, now_ms: int, limit: int) -> pl.DataFrame:
        """Candles whose bucket starts in `[floor(start), end)`, at most `limit` of them, newest first.

        Like the Exchange (§3.2) the first bucket is aligned down, so it may begin before `start`; when that
        makes one row too many, the oldest is dropped.
        """
        first_bucket_s = start_s - start_s % granularity_s
        if end_s <= first_bucket_s:
            return pl.DataFrame(schema=dict.fromkeys(CANDLE_COLUMNS, pl.Float64) | {"start_s": pl.Int64})
        bars = self.minutes(first_bucket_s * 1000, (end_s - 1) * 1000, now_ms)
        grouped = (
            bars.with_columns(start_s=(pl.col("start_ms") // 1000) - (pl.col("start_ms") // 1000) % granularity_s)
            .group_by("start_s")
            .agg(
                low=pl.col("low").min(),
                high=pl.col("high").max(),
                open=pl.col("open").sort_by("start_ms").first(),
                close=pl.col("close").sort_by("start_ms").last(),
                volume=pl.col("volume").sum().round(8),
            )
        )
        return grouped.sort("start_s", descending=True).head(limit).select(CANDLE_COLUMNS)
