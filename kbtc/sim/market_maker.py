"""A noisy market maker: per-second books and trades around a model fair value, deterministic per seed.

Fair value is the zero-drift GBM digital on the 60-print settlement average (`reference/model_math.md`
§1.3): before the averaging window the variance horizon is `T − 60 + (n+1)(2n+1)/(6n)` seconds; inside it the
already-fixed prints shift the strike, `K* = (n·K − Σ fixed)/m`, with variance `σ²·(m+1)(2m+1)/(6m)`.

For each market the quoting seconds `[open, close)` are generated at once, vectorised: fair value, the
maker's noisy mid and half-spread, the best YES bid/ask snapped to the market's price grid (sub-penny ticks
near 0 and 1 on `tapered_deci_cent`) and at most one trade per second. Behind the touch, each grid level
within `DEPTH_TICKS` holds an order with a size that persists for ~10 s (a hash of ticker, price and epoch),
so books change level by level rather than all at once. Every random draw comes from `(seed, ticker,
chunk)` streams or hashes, so a book at second `s` never depends on when it is asked. Prices are integers
in units of $0.0001, counts in hundredths of a contract.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from kbtc.sim.markets import Market
from kbtc.sim.price import SECONDS_PER_YEAR, GbmSpotSource

PRICE_UNITS = 10_000  # $1 in price units ($0.0001)
DEPTH_TICKS = 8  # grid levels behind and including the best bid that may hold orders
LEVEL_FILL = 0.55  # chance a level behind the touch holds an order in a given epoch
HOLD_S = 10  # how long a level's order (or its absence) persists
_CHUNK_S = 600
_SIZE_GRID = np.array([1, 2, 5, 10, 13, 20, 25, 40, 50, 75, 100, 150, 200, 250, 300, 500])

PRICE_RANGES: dict[str, list[dict[str, str]]] = {
    "linear_cent": [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
    "tapered_deci_cent": [
        {"start": "0.0000", "end": "0.1000", "step": "0.0010"},
        {"start": "0.1000", "end": "0.9000", "step": "0.0100"},
        {"start": "0.9000", "end": "1.0000", "step": "0.0010"},
    ],
}


def price_grid(structure: str) -> np.ndarray:
    """Valid prices strictly between 0 and 1, in $0.0001 units (`reference/kalshi_api.md` §4 price_ranges)."""
    if structure == "tapered_deci_cent":
        return np.concatenate([np.arange(10, 1000, 10), np.arange(1000, 9000, 100), np.arange(9000, 10000, 10)])
    return np.arange(100, 10000, 100)


@dataclass(frozen=True, slots=True)
class MakerConfig:
    """How the market maker quotes: fair-value noise, spreads, depth, trade frequency (dollars, counts)."""

    vol_annual: float = 0.5
    fair_noise: float = 0.01
    half_spread: float = 0.01
    spread_noise: float = 0.01
    trade_probability: float = 0.25
    mean_trade_contracts: float = 12.0


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread deterministic hash of uint64 values."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        mixed: np.ndarray = z ^ (z >> np.uint64(31))
    return mixed


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, vectorised (Abramowitz & Stegun 7.1.26 erf, |error| < 1.5e-7)."""
    z = np.abs(np.nan_to_num(x, nan=0.0, posinf=40.0, neginf=-40.0)) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    cdf: np.ndarray = np.where(x >= 0, 0.5 * (1.0 + erf), 0.5 * (1.0 - erf))
    return cdf


def prob_average_above(spot: np.ndarray, strike: float, seconds_to_close: np.ndarray, fixed_sum: np.ndarray,
                       vol_annual: float) -> np.ndarray:
    """P(mean of the 60 prints ending at close > strike), per quoting second (zero-drift GBM)."""
    sigma2 = vol_annual**2 / SECONDS_PER_YEAR
    remaining = np.minimum(seconds_to_close, 60).astype(float)
    shifted = (60 * strike - fixed_sum) / np.maximum(remaining, 1.0)
    variance = sigma2 * (np.maximum(seconds_to_close - 60, 0) + (remaining + 1) * (2 * remaining + 1) / (6 * remaining))
    with np.errstate(divide="ignore", invalid="ignore"):
        d2 = (np.log(spot / shifted) - variance / 2) / np.sqrt(variance)
    return np.where(shifted <= 0, 1.0, _norm_cdf(d2))


@dataclass(slots=True)
class QuoteTape:
    """One market's quoting seconds `[open_s, open_s + n)`: fair value, best quotes, depth and trades."""

    open_s: int
    fair: np.ndarray  # model probability, 0..1
    bid_ix: np.ndarray  # grid index of the best YES bid, −1 when none
    ask_ix: np.ndarray  # grid index of the best YES ask, len(grid) when none
    trade_count_c: np.ndarray  # 0 when no trade that second
    trade_taker_yes: np.ndarray
    trade_price: np.ndarray  # YES price of the trade, $0.0001 units
    cum_volume_c: np.ndarray
    cum_dollar_volume: np.ndarray  # dollars
    grid: np.ndarray

    def at(self, second: int) -> int | None:
        """Row of `second`, or None outside the quoting seconds."""
        i = second - self.open_s
        return i if 0 <= i < len(self.fair) else None


@dataclass(frozen=True, slots=True)
class Book:
    """A YES/NO bid book: `{price_units: count_hundredths}` per side (NO side in NO-leg prices)."""

    yes: dict[int, int]
    no: dict[int, int]


class MarketMaker:
    """Books, top-of-book and trades of every market as functions of (market, second)."""

    def __init__(self, config: MakerConfig, source: GbmSpotSource, seed: int) -> None:
        self.config = config
        self.source = source
        self.seed = seed
        self._tapes: dict[str, QuoteTape] = {}

    def tape(self, market: Market) -> QuoteTape:
        """The cached quote tape of a market (generated on first use)."""
        tape = self._tapes.get(market.ticker)
        if tape is None:
            tape = self._tapes[market.ticker] = self._generate(market)
        return tape

    def retain(self, tickers: set[str]) -> None:
        """Forget the tapes of every other market (a long run must not keep every market ever listed)."""
        for ticker in [t for t in self._tapes if t not in tickers]:
            del self._tapes[ticker]

    def _draws(self, ticker: str, n: int) -> dict[str, np.ndarray]:
        key = zlib.crc32(ticker.encode())
        parts: dict[str, list[np.ndarray]] = {}
        for chunk in range(math.ceil(n / _CHUNK_S)):
            rng = np.random.default_rng([self.seed, 11, key, chunk])
            draws = {
                "fair_noise": rng.standard_normal(_CHUNK_S),
                "spread_noise": rng.standard_normal(_CHUNK_S),
                "trade_u": rng.random(_CHUNK_S),
                "trade_yes": rng.random(_CHUNK_S) < 0.5,
                "trade_count": rng.geometric(1 / self.config.mean_trade_contracts, _CHUNK_S),
            }
            for name, value in draws.items():
                parts.setdefault(name, []).append(value)
        return {name: np.concatenate(chunks)[:n] for name, chunks in parts.items()}

    def _fair(self, market: Market, seconds: np.ndarray) -> np.ndarray:
        close_s = market.close_ms // 1000
        window = np.arange(close_s - 59, close_s + 1)
        prints = self.source.index_at_seconds(window)
        spot = self.source.index_at_seconds(seconds)
        # Σ of the window prints already fixed at each second (prints at or before it).
        fixed_count = np.clip(seconds - (close_s - 60), 0, 60)
        fixed_sum = np.concatenate([[0.0], np.cumsum(prints)])[fixed_count]
        to_close = close_s - seconds
        vol = self.config.vol_annual

        def above(strike: float | None) -> np.ndarray:
            return prob_average_above(spot, strike or 0.0, to_close, fixed_sum, vol)

        fair: np.ndarray
        if market.strike_type in ("greater", "greater_or_equal"):
            fair = above(market.floor_strike)
        elif market.strike_type == "less":
            fair = 1.0 - above(market.cap_strike)
        else:
            fair = above(market.floor_strike) - above(market.cap_strike)
        return fair

    def _generate(self, market: Market) -> QuoteTape:
        cfg = self.config
        open_s, close_s = market.open_ms // 1000, market.close_ms // 1000
        seconds = np.arange(open_s, close_s)
        n = len(seconds)
        draws = self._draws(market.ticker, n)
        fair = np.clip(self._fair(market, seconds), 0.0, 1.0)
        grid = price_grid(market.price_level_structure)
        # Smooth the maker's noise over ~10 s so quotes wander instead of jumping every second.
        kernel = np.ones(HOLD_S) / np.sqrt(HOLD_S)
        fair_noise = np.convolve(draws["fair_noise"], kernel, mode="same")
        spread_noise = np.abs(np.convolve(draws["spread_noise"], kernel, mode="same")) / np.sqrt(HOLD_S)
        mid = np.clip(fair + cfg.fair_noise * fair_noise, 0.0, 1.0) * PRICE_UNITS
        half = (cfg.half_spread + cfg.spread_noise * spread_noise) * PRICE_UNITS
        bid_ix = np.searchsorted(grid, mid - half, side="right") - 1
        ask_ix = np.maximum(np.searchsorted(grid, mid + half, side="left"), bid_ix + 1)
        # A trade lifts the ask (taker buys YES) or hits the bid (taker buys NO) when that side exists.
        taker_yes = draws["trade_yes"]
        has_side = np.where(taker_yes, ask_ix < len(grid), bid_ix >= 0)
        # Far-from-the-money markets trade less often than contested ones.
        activity = 0.2 + 3.2 * fair * (1.0 - fair)
        traded = (draws["trade_u"] < cfg.trade_probability * activity) & has_side
        price = np.where(taker_yes, grid[np.minimum(ask_ix, len(grid) - 1)], grid[np.maximum(bid_ix, 0)])
        count_c = np.where(traded, draws["trade_count"] * 100, 0)
        return QuoteTape(
            open_s=open_s, fair=fair, bid_ix=bid_ix, ask_ix=ask_ix, trade_count_c=count_c,
            trade_taker_yes=taker_yes, trade_price=price,
            cum_volume_c=np.cumsum(count_c), cum_dollar_volume=np.cumsum(count_c * price) / 100 / PRICE_UNITS,
            grid=grid,
        )

    def book(self, market: Market, second: int) -> Book:
        """Resting bids at `second` (empty outside the quoting seconds)."""
        tape = self.tape(market)
        i = tape.at(second)
        if i is None:
            return Book({}, {})
        grid = tape.grid
        key = zlib.crc32(market.ticker.encode())
        sides: list[dict[int, int]] = []
        # NO bids mirror YES asks: a NO bid at 1 − x is a YES offer at x (`reference/kalshi_api.md` §3).
        for side, best in ((0, int(tape.bid_ix[i])), (1, len(grid) - 1 - int(tape.ask_ix[i]))):
            positions = np.arange(max(best - DEPTH_TICKS + 1, 0), best + 1)
            prices = grid[positions].astype(np.uint64)
            salt = np.uint64((self.seed * 1_000_003 + key) * 2 + side)
            phase = _mix(prices ^ salt) % np.uint64(HOLD_S)
            epoch = (np.uint64(second) + phase) // np.uint64(HOLD_S)
            draw = _mix(prices * np.uint64(1_000_003) + epoch * np.uint64(7919) + salt)
            held = (positions == best) | ((draw % np.uint64(1000)).astype(float) < LEVEL_FILL * 1000)
            sizes = _SIZE_GRID[(draw >> np.uint64(20)) % np.uint64(len(_SIZE_GRID))] * 100
            sides.append({int(p): int(c) for p, c, h in zip(prices, sizes, held, strict=True) if h})
        return Book(sides[0], sides[1])

    def last_trade_row(self, market: Market, second: int) -> int | None:
        """Row of the last trade at or before `second`, or None."""
        tape = self.tape(market)
        upto = min(second - tape.open_s, len(tape.fair) - 1)
        if upto < 0:
            return None
        rows = np.flatnonzero(tape.trade_count_c[: upto + 1])
        return int(rows[-1]) if len(rows) else None
