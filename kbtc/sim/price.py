"""The simulated BTC price path: a seeded 1-second GBM index, a slowly varying basis, Coinbase tick noise.

The index (BRTI-like, `reference/kalshi_api.md` §8: one print per second, in cents) is a zero-drift GBM on
a 1-second grid with optional Poisson jumps. The Coinbase price is the index plus a basis that follows an
Ornstein–Uhlenbeck process on a 1-minute grid (a few dollars, mean-reverting, free to change sign) plus
tick noise that is a deterministic function of the 250 ms bucket, rounded to the $0.01 tick.

Everything is generated lazily in fixed-size chunks, each seeded by `(seed, stream, chunk index)`, so a
value depends only on the seed and the time asked — never on the order or the moment it is asked. The grid
starts `warmup_s` before the simulator's start (default 2 days) so REST candle backfills have history.

Replay: given a recorded spot tape (`load_spot_tape`: per-second last prices), the index follows the tape
from the grid origin on — its first `warmup_s` seconds are history, the rest plays live — and continues as
a GBM from the tape's last price once the tape ends. Basis and Coinbase noise are added as usual.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kbtc.pipeline.tape import read_tape

SECONDS_PER_YEAR = 365 * 86400
CHUNK_S = 3600  # one chunk of the 1-second index grid
BASIS_STEP_S = 60  # the basis lives on a 1-minute grid, linearly interpolated in between
NOISE_BUCKET_MS = 250
_STREAM_INDEX, _STREAM_BASIS, _STREAM_NOISE = 1, 2, 3


@dataclass(frozen=True, slots=True)
class PriceConfig:
    """Knobs of the price process (all in natural units: dollars, seconds, annualised volatility)."""

    seed: int = 0
    start_price_usd: float = 100_000.0
    vol_annual: float = 0.5
    jumps_per_day: float = 0.0
    jump_sigma: float = 0.005  # standard deviation of a jump's log size
    basis_mean_usd: float = 0.0
    basis_sd_usd: float = 4.0  # stationary standard deviation of the Coinbase − index basis
    basis_half_life_s: float = 1800.0
    tick_noise_usd: float = 1.5  # standard deviation of the per-250-ms Coinbase noise
    warmup_s: int = 2 * 86400


class GbmSpotSource:
    """A deterministic `SpotSource`: index and Coinbase prices for any time from `origin_ms` on."""

    def __init__(self, config: PriceConfig, start_ms: int, tape_usd: np.ndarray | None = None) -> None:
        self.config = config
        self._tape_log = None if tape_usd is None else np.log(np.asarray(tape_usd, dtype=float))
        # Align the grid origin to a whole second so "constant within a second" is exact.
        self.origin_s = start_ms // 1000 - config.warmup_s
        self.start_s = start_ms // 1000
        self._log_index: np.ndarray = np.empty(0)  # log index per second after the origin, whole chunks
        self._basis: np.ndarray = np.array([config.basis_mean_usd])  # basis at minute k after origin
        # Servers in other threads (e.g. a Coinbase REST handler) may extend the path concurrently.
        self._lock = threading.RLock()

    @property
    def origin_ms(self) -> int:
        """The first millisecond the path is defined for."""
        return self.origin_s * 1000

    def _rng(self, stream: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, stream, index])

    def _extend_index(self, upto_chunk: int) -> None:
        cfg = self.config
        sigma_s = cfg.vol_annual / math.sqrt(SECONDS_PER_YEAR)
        chunks: list[np.ndarray] = [self._log_index]
        for k in range(len(self._log_index) // CHUNK_S, upto_chunk + 1):
            rng = self._rng(_STREAM_INDEX, k)
            # Zero-drift GBM in price: the log drifts by −σ²/2 per unit time (reference/model_math.md §1.3).
            steps = rng.standard_normal(CHUNK_S) * sigma_s - 0.5 * sigma_s * sigma_s
            if cfg.jumps_per_day > 0:
                hits = rng.random(CHUNK_S) < cfg.jumps_per_day / 86400
                steps += hits * rng.normal(0.0, cfg.jump_sigma, CHUNK_S)
            if k == 0:
                steps[0] = 0.0
            previous = chunks[-1][-1] if k else 0.0
            chunks.append(self._replay(k, previous + np.cumsum(steps), steps))
        if len(chunks) > 1:
            self._log_index = np.concatenate(chunks)

    def _extend_basis(self, upto_minute: int) -> None:
        cfg = self.config
        have = len(self._basis)
        if upto_minute < have:
            return
        phi = 0.5 ** (BASIS_STEP_S / cfg.basis_half_life_s)
        shock_sd = cfg.basis_sd_usd * math.sqrt(1.0 - phi * phi)
        # Shocks come in chunks seeded by chunk index, so the path does not depend on how far it was extended.
        first_chunk, last_chunk = have // CHUNK_S, upto_minute // CHUNK_S
        shocks = np.concatenate([self._rng(_STREAM_BASIS, c).normal(0.0, shock_sd, CHUNK_S)
                                 for c in range(first_chunk, last_chunk + 1)])
        offset = first_chunk * CHUNK_S
        values = np.empty(upto_minute + 1 - have)
        level = float(self._basis[-1]) - cfg.basis_mean_usd
        for i, minute in enumerate(range(have, upto_minute + 1)):
            level = phi * level + float(shocks[minute - offset])
            values[i] = level + cfg.basis_mean_usd
        self._basis = np.concatenate([self._basis, values])

    def _replay(self, chunk: int, simulated: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Overlay the recorded tape on a chunk; after the tape ends the GBM continues from its last print."""
        tape = self._tape_log
        first = chunk * CHUNK_S
        covered = 0 if tape is None else int(np.clip(len(tape) - first, 0, CHUNK_S))
        if tape is None or covered == 0:
            return simulated  # no tape, or a chunk after the tape: the GBM already continues from its end
        out = np.empty(CHUNK_S)
        out[:covered] = tape[first : first + covered]
        out[covered:] = tape[-1] + np.cumsum(steps[covered:])
        return out

    def index_at_seconds(self, seconds: np.ndarray) -> np.ndarray:
        """Index prints (USD) at whole epoch seconds (vectorised; every second must be ≥ the origin)."""
        offsets = np.asarray(seconds, dtype=np.int64) - self.origin_s
        if offsets.size == 0:
            return np.empty(0)
        if int(offsets.min()) < 0:
            raise ValueError("the price path starts at its origin; earlier seconds are undefined")
        with self._lock:
            self._extend_index(max(int(offsets.max()), self.config.warmup_s) // CHUNK_S)
            log_index = self._log_index
        # Anchor a simulated path so the print at the simulator's start is exactly the configured start price.
        anchor = 0.0 if self._tape_log is not None else math.log(self.config.start_price_usd) - log_index[
            self.config.warmup_s]
        # BRTI is published in cents.
        prints: np.ndarray = np.round(np.exp(log_index[offsets] + anchor), 2)
        return prints

    def index_usd(self, ts_ms: int) -> float:
        """The index print in force at `ts_ms` (constant within a second)."""
        return float(self.index_at_seconds(np.array([ts_ms // 1000]))[0])

    def basis_usd(self, ts_ms: int) -> float:
        """Coinbase − index basis at `ts_ms`: the 1-minute OU path, linearly interpolated."""
        position = (ts_ms / 1000 - self.origin_s) / BASIS_STEP_S
        if position < 0:
            raise ValueError("the price path starts at its origin; earlier times are undefined")
        minute = int(position)
        with self._lock:
            self._extend_basis(minute + 1)
            basis = self._basis
        weight = position - minute
        return float((1 - weight) * basis[minute] + weight * basis[minute + 1])

    def coinbase_usd(self, ts_ms: int) -> float:
        """Coinbase trade price: the index interpolated within the second, plus basis and tick noise, to $0.01."""
        second = ts_ms // 1000
        left, right = self.index_at_seconds(np.array([second, second + 1]))
        fraction = (ts_ms - second * 1000) / 1000
        bucket = ts_ms // NOISE_BUCKET_MS
        noise = self._rng(_STREAM_NOISE, bucket).normal(0.0, self.config.tick_noise_usd)
        price = left + (right - left) * fraction + self.basis_usd(ts_ms) + noise
        return round(float(price), 2)

    def average_60s(self, end_ms: int) -> float:
        """Simple mean of the 60 index prints in the minute ending at `end_ms` (inclusive of its second).

        The window is `(end − 60 s, end]` in whole seconds — `reference/kalshi_api.md` §5 (cfbenchmarks
        `last_60s_windowed_average_15min`, "count reaches 60 at the close tick") and §8 (settlement rules).
        """
        end_s = end_ms // 1000
        return float(self.index_at_seconds(np.arange(end_s - 59, end_s + 1)).mean())


def load_spot_tape(path: Path) -> np.ndarray:
    """Per-second last prices (forward-filled) from a recorded spot tape.

    Accepted: a CSV or Parquet file with `ts`/`ts_ms`/`timestamp_ms` (epoch ms) and `price`/`price_usd`/`mid`
    columns (rows need not be sorted), or kbtc's own frame tape (`kbtc.pipeline.tape`: a directory or
    `*.jsonl.gz` files) of Coinbase frames — Advanced Trade `ticker`/`market_trades` and Exchange `ticker`
    prices, timed by their receive time.
    """
    if path.is_dir() or path.name.endswith(".jsonl.gz"):
        ts_ms, prices = _frame_tape_prices(sorted(path.rglob("*.jsonl.gz")) if path.is_dir() else [path])
        frame = pl.DataFrame({"ts": ts_ms, "price": prices}, schema={"ts": pl.Int64, "price": pl.Float64})
    else:
        raw = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
        ts_col = next((c for c in ("ts", "ts_ms", "timestamp_ms") if c in raw.columns), None)
        price_col = next((c for c in ("price", "price_usd", "mid") if c in raw.columns), None)
        if ts_col is None or price_col is None:
            raise ValueError(f"{path}: a spot tape needs a ts (ms) and a price column, got {raw.columns}")
        frame = raw.select(pl.col(ts_col).cast(pl.Int64).alias("ts"), pl.col(price_col).cast(pl.Float64).alias("price"))
    per_second = (
        frame.drop_nulls().sort("ts").with_columns((pl.col("ts") // 1000).alias("second"))
        .group_by("second", maintain_order=True).last()
    )
    if per_second.height == 0:
        raise ValueError(f"{path}: the spot tape has no prices")
    seconds = per_second["second"].to_numpy()
    prices_by_second = per_second["price"].to_numpy()
    grid = np.arange(seconds[0], seconds[-1] + 1)
    filled: np.ndarray = prices_by_second[np.searchsorted(seconds, grid, side="right") - 1]
    return filled


def _frame_tape_prices(paths: list[Path]) -> tuple[list[int], list[float]]:
    """(receive ms, price) of every Coinbase price in recorded frames; other frames are skipped."""
    ts_ms: list[int] = []
    prices: list[float] = []
    for record in read_tape(paths):
        try:
            frame = json.loads(record.raw)
        except ValueError:
            continue
        if not isinstance(frame, dict):
            continue
        found: list[Any] = []
        if frame.get("type") == "ticker":  # Exchange feed
            found.append(frame.get("price"))
        for event in frame.get("events") or []:
            if frame.get("channel") == "ticker":
                found.extend(t.get("price") for t in event.get("tickers") or [])
            elif frame.get("channel") == "market_trades":
                found.extend(t.get("price") for t in event.get("trades") or [])
        for price in found:
            try:
                value = float(price)
            except (TypeError, ValueError):
                continue
            ts_ms.append(record.received_ts)
            prices.append(value)
    return ts_ms, prices
