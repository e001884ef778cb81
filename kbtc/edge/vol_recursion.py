"""Vectorised building blocks of the volatility and basis estimators: the spot mid and a decayed running sum.

Both estimators are exponentially weighted sums read at many as-of times. Instead of a Python loop over the
ticks (or over the as-of times), the recursion `A_j = exp(−c_j)·A_{j−1} + x_j` is evaluated for the whole
series at once (`decayed_cumsum`), and a trailing window `(i_start, j]` is cut out of it by one subtraction
(`window_sum`), so a replay with thousands of as-of times gathers its answers with `np.searchsorted`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# exp(±500) stays far inside float64 (≈1e±217), so in-block rescaled terms never overflow.
_BLOCK_LOG_DECAY = 500.0


def spot_mid(spot: pl.DataFrame, *, use_quotes: bool = True) -> tuple[IntArray, FloatArray]:
    """Return (ts ms, price) of the usable ticks, oldest first: the bid/ask mid, else the last price.

    The mid is used when both sides are present, positive and not crossed; otherwise the tick's `price`
    (coinbase_api.md §1.4: the ticker carries both). Ticks without a positive finite price are dropped.
    `use_quotes=False` takes `price` only (the seed system's input, seed_system.md §3.2).
    """
    frame = spot.filter(pl.col("ts").is_not_null()) if spot["ts"].null_count() else spot
    ts = frame["ts"].cast(pl.Int64).to_numpy()
    price = frame["price"].cast(pl.Float64).to_numpy()  # nulls become NaN
    if use_quotes:
        bid = frame["best_bid"].cast(pl.Float64).to_numpy()
        ask = frame["best_ask"].cast(pl.Float64).to_numpy()
        with np.errstate(invalid="ignore"):
            quoted = np.isfinite(bid) & np.isfinite(ask) & (bid > 0) & (ask >= bid)
        price = np.where(quoted, (bid + ask) / 2, price)
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(price) & (price > 0)
    ts, price = ts[keep], price[keep]
    if ts.shape[0] > 1 and not bool(np.all(ts[1:] >= ts[:-1])):
        order = np.argsort(ts, kind="stable")
        ts, price = ts[order], price[order]
    return ts.astype(np.int64, copy=False), price.astype(np.float64, copy=False)


def decayed_cumsum(values: FloatArray, log_decay: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Evaluate `A_j = exp(−log_decay[j])·A_{j−1} + values[j]` (A_{−1} = 0) for every j; return (A, C).

    `C = cumsum(log_decay)` is returned too: the weight at j of term i is `exp(−(C_j − C_i))`. The series is
    cut into blocks where C grows by < 500 so that `exp(C_i − C_block)` cannot overflow; within a block the
    sum is a plain cumsum, and only the carry between blocks is sequential (a few blocks per month of data).
    """
    cum = np.cumsum(log_decay, dtype=np.float64)
    out = np.empty(values.shape[0], dtype=np.float64)
    if values.shape[0] == 0:
        return out, cum
    block = np.floor((cum - cum[0]) / _BLOCK_LOG_DECAY)
    starts = np.flatnonzero(np.diff(block, prepend=-1.0))
    ends = np.append(starts[1:], values.shape[0])
    carry, carry_cum = 0.0, 0.0
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        rel = cum[start:end] - cum[start]
        part = np.exp(-rel) * np.cumsum(np.exp(rel) * values[start:end])
        if start > 0:
            part += carry * np.exp(-(cum[start:end] - carry_cum))
        out[start:end] = part
        carry, carry_cum = float(part[-1]), float(cum[end - 1])
    return out, cum


def window_sum(acc: FloatArray, cum: FloatArray, first: IntArray, last: IntArray) -> FloatArray:
    """Decayed sum of the terms in `(first, last]` as seen at `last`: `A_last − exp(−(C_last − C_first))·A_first`.

    Rows with `last <= first` (an empty window) give 0. Indexes must be valid where the window is non-empty.
    """
    valid = last > first
    lo = np.where(valid, first, 0)
    hi = np.where(valid, last, 0)
    if acc.shape[0] == 0:
        return np.zeros(first.shape[0], dtype=np.float64)
    total = acc[hi] - np.exp(-(cum[hi] - cum[lo])) * acc[lo]
    return np.where(valid, total, 0.0)
