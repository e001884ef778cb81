"""The simulated BTC-USD tape: trades, top of book and 24-hour statistics, all derived from a `SpotSource`.

Ticks sit on a fixed grid of `period_ms` (tick k at `k * period_ms`), so tick k carries the same trades,
prices and ids for every client and every replay. A tick in an *empty minute* carries no trade: Coinbase
publishes a ticker only when a match happens (§1.4), and the Exchange candles omit minutes without trades
(§3.2), so both feeds and both candle endpoints agree on which minutes are silent.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kbtc.sim.coinbase import hashing
from kbtc.sim.spot_source import SpotSource

MINUTE_MS = 60_000
TRADE_ID_SLOTS = 4  # trade ids are tick * 4 + j: increasing, not contiguous (the ticker skips trades anyway)
MAX_TRADES_PER_TICK = 3
PRICE_TICK_USD = 0.01
_TICK_CACHE = 4096


@dataclass(frozen=True, slots=True)
class Trade:
    """One simulated match."""

    trade_id: int
    time_ms: int
    price_usd: float
    size_btc: float
    side: str  # "BUY" | "SELL" — the maker's side, as the Advanced Trade docs define it (§1.7)


@dataclass(frozen=True, slots=True)
class Tick:
    """The market at grid point `index`: last price, top of book and the trades since the previous tick."""

    index: int
    time_ms: int
    price_usd: float
    best_bid_usd: float
    best_bid_btc: float
    best_ask_usd: float
    best_ask_btc: float
    trades: tuple[Trade, ...]


@dataclass(frozen=True, slots=True)
class Stats24h:
    """Rolling statistics the tickers carry (sampled once a minute, see `Tape.stats_24h`)."""

    open_usd: float
    low_usd: float
    high_usd: float
    volume_btc: float
    low_52w_usd: float
    high_52w_usd: float


class Tape:
    """Deterministic trades and quotes for one product, read from a `SpotSource` on a fixed tick grid."""

    def __init__(
        self,
        source: SpotSource,
        *,
        seed: int,
        ticks_per_second: float,
        empty_minute_fraction: float,
        mean_minute_volume_btc: float = 4.0,
    ) -> None:
        if ticks_per_second <= 0:
            raise ValueError("ticks_per_second must be positive")
        if not 0.0 <= empty_minute_fraction < 1.0:
            raise ValueError("empty_minute_fraction must be in [0, 1)")
        self.source = source
        self.seed = seed
        self.period_ms = max(1, round(1000 / ticks_per_second))
        self.empty_minute_fraction = empty_minute_fraction
        self.mean_minute_volume_btc = mean_minute_volume_btc
        self._ticks: OrderedDict[int, Tick] = OrderedDict()
        self._minute_opens: dict[int, float] = {}
        self._stats: tuple[int, Stats24h] | None = None
        self._band_52w: tuple[float, float] | None = None

    # -- minutes -------------------------------------------------------------------------------------------

    def trading_minutes(self, minute_ms: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether anything traded in each minute (given by its start, epoch ms)."""
        keys = np.asarray(minute_ms, dtype=np.int64) // MINUTE_MS
        draws = hashing.uniform(self.seed, hashing.STREAM_EMPTY_MINUTE, keys)
        return draws >= self.empty_minute_fraction

    def minute_volumes_btc(self, minute_ms: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Traded volume of each minute (exponentially distributed, zero in empty minutes), 8 decimals."""
        minutes = np.asarray(minute_ms, dtype=np.int64)
        draws = hashing.uniform(self.seed, hashing.STREAM_MINUTE_VOLUME, minutes // MINUTE_MS)
        volumes = np.round(-np.log1p(-draws) * self.mean_minute_volume_btc + 1e-8, 8)
        return np.where(self.trading_minutes(minutes), volumes, 0.0)

    # -- ticks ---------------------------------------------------------------------------------------------

    def tick_index_at(self, ts_ms: int) -> int:
        """The last grid point at or before `ts_ms`."""
        return ts_ms // self.period_ms

    def tick(self, index: int) -> Tick:
        """The market at grid point `index` (cached: every connection asks for the same recent ticks)."""
        cached = self._ticks.get(index)
        if cached is not None:
            return cached
        time_ms = index * self.period_ms
        price = round(self.source.coinbase_usd(time_ms), 2)
        bid_steps, ask_steps, bid_size_u, ask_size_u = hashing.uniform(
            self.seed, hashing.STREAM_BOOK, [index * 4, index * 4 + 1, index * 4 + 2, index * 4 + 3]
        )
        # The last trade happened at or inside the touch: bid ≤ price ≤ ask, spread 1–3 cents.
        best_bid = round(price - PRICE_TICK_USD * math.floor(bid_steps * 2), 2)
        best_ask = round(best_bid + PRICE_TICK_USD * (1 + math.floor(ask_steps * 3)), 2)
        tick = Tick(
            index=index,
            time_ms=time_ms,
            price_usd=price,
            best_bid_usd=best_bid,
            best_bid_btc=_size_btc(bid_size_u, 0.8),
            best_ask_usd=best_ask,
            best_ask_btc=_size_btc(ask_size_u, 0.8),
            trades=self._trades(index, time_ms, price),
        )
        self._ticks[index] = tick
        if len(self._ticks) > _TICK_CACHE:
            self._ticks.popitem(last=False)
        return tick

    def _trades(self, index: int, time_ms: int, price_usd: float) -> tuple[Trade, ...]:
        minute_ms = time_ms - time_ms % MINUTE_MS
        if not bool(self.trading_minutes([minute_ms])[0]):
            return ()
        count = 1 + math.floor(hashing.uniform_one(self.seed, hashing.STREAM_TRADE_COUNT, index) * MAX_TRADES_PER_TICK)
        ids = np.arange(count, dtype=np.int64) + index * TRADE_ID_SLOTS
        sizes = hashing.uniform(self.seed, hashing.STREAM_TRADE_SIZE, ids)
        sides = hashing.uniform(self.seed, hashing.STREAM_TRADE_SIDE, ids)
        # Trades of one batch land a few milliseconds apart, the last one on the grid point.
        return tuple(
            Trade(
                trade_id=int(ids[j]),
                time_ms=time_ms - (count - 1 - j) * 3,
                price_usd=price_usd,
                size_btc=_size_btc(float(sizes[j]), 0.05),
                side="BUY" if sides[j] < 0.5 else "SELL",
            )
            for j in range(count)
        )

    def last_trade_tick(self, index: int, lookback: int = 4 * 60 * 10) -> Tick | None:
        """The latest tick at or before `index` that carried trades (None if none within `lookback` ticks)."""
        for k in range(index, index - lookback, -1):
            candidate = self.tick(k)
            if candidate.trades:
                return candidate
        return None

    def recent_trades(self, index: int, limit: int) -> list[Trade]:
        """Up to `limit` trades at or before tick `index`, newest first (the `market_trades` snapshot)."""
        trades: list[Trade] = []
        k = index
        # Bounded walk back: a couple of empty minutes must not make a snapshot scan the whole history.
        while len(trades) < limit and k > index - 2 * MINUTE_MS // self.period_ms - 1:
            trades.extend(reversed(self.tick(k).trades))
            k -= 1
        return trades[:limit]

    # -- 24 h statistics -----------------------------------------------------------------------------------

    def _minute_open_usd(self, minute_ms: int) -> float | None:
        price = self._minute_opens.get(minute_ms)
        if price is None:
            try:
                price = round(self.source.coinbase_usd(minute_ms), 2)
            except ValueError:  # before the start of the price path: no history there
                return None
            self._minute_opens[minute_ms] = price
        return price

    def stats_24h(self, now_ms: int, last_price_usd: float) -> Stats24h:
        """24 h open/low/high from the opening price of each of the last 1440 minutes, plus the last price.

        Sampling minute opens keeps this at one price read per minute after the first call; a real 24 h
        low/high would need every trade. The 52-week band is synthetic (the path has no year of history):
        a fixed band around the first day's range, widened whenever the path leaves it.
        """
        current_minute = now_ms - now_ms % MINUTE_MS
        if self._stats is None or self._stats[0] != current_minute:
            first_minute = current_minute - 1440 * MINUTE_MS
            minutes = range(first_minute, current_minute + MINUTE_MS, MINUTE_MS)
            opens = [p for p in (self._minute_open_usd(m) for m in minutes) if p is not None] or [last_price_usd]
            for stale in [m for m in self._minute_opens if m < first_minute]:
                del self._minute_opens[stale]
            volume = float(self.minute_volumes_btc(np.arange(first_minute + MINUTE_MS, current_minute + MINUTE_MS,
                                                             MINUTE_MS)).sum())
            low, high = min(opens), max(opens)
            if self._band_52w is None:
                self._band_52w = (math.floor(low * 0.6), math.ceil(high * 1.4))
            self._band_52w = (min(self._band_52w[0], low), max(self._band_52w[1], high))
            stats = Stats24h(opens[0], low, high, round(volume, 8), *self._band_52w)
            self._stats = (current_minute, stats)
        stats = self._stats[1]
        return Stats24h(
            open_usd=stats.open_usd,
            low_usd=min(stats.low_usd, last_price_usd),
            high_usd=max(stats.high_usd, last_price_usd),
            volume_btc=stats.volume_btc,
            low_52w_usd=min(stats.low_52w_usd, last_price_usd),
            high_52w_usd=max(stats.high_52w_usd, last_price_usd),
        )


def _size_btc(draw: float, mean_btc: float) -> float:
    """An exponentially distributed size with the given mean, at least one satoshi, 8 decimals."""
    return max(1e-8, round(-math.log1p(-draw) * mean_btc, 8))
