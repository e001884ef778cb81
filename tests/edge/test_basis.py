"""The Coinbase-to-BRTI basis: from published 60 s averages, from index prints, with no look-ahead."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbtc.edge.basis import BasisParams, coinbase_window_average, estimate_basis, reference_gaps
from kbtc.edge.vol_recursion import spot_mid

T0 = 1_795_000_200_000  # a quarter hour
QUARTER_MS = 900_000


def flat_spot(start: int, end: int, mid: float = 95_000.0, step_ms: int = 500) -> pl.DataFrame:
    ts = np.arange(start, end, step_ms, dtype=np.int64)
    return pl.DataFrame({"ts": ts, "price": mid + 3.0, "best_bid": mid - 0.005, "best_ask": mid + 0.005})


def refs(rows: list[tuple[int, float, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "market_ticker": [f"KXBTC15M-{i}" for i in range(len(rows))],
            "window_end_ts": [r[0] for r in rows],
            "index_avg_usd": [r[1] for r in rows],
            "kind": [r[2] for r in rows],
        }
    )


def test_weighted_gap_by_hand() -> None:
    spot = flat_spot(T0 - 120_000, T0 + 2 * QUARTER_MS + 1)
    references = refs(
        [
            (T0, 95_006.0, "strike"),
            (T0 + QUARTER_MS, 95_002.0, "expiration"),
            (T0 + QUARTER_MS, 95_002.0, "strike"),  # the next market's strike: the same minute, counted once
            (T0 + 2 * QUARTER_MS, 94_998.0, "strike"),
        ]
    )
    out = estimate_basis(spot, [T0 + 2 * QUARTER_MS], references=references)
    gaps = np.array([6.0, 2.0, -2.0])
    w = np.array([2 ** (-1800 / 1800), 2 ** (-900 / 1800), 1.0])  # the default half-life is 30 min
    mean = np.sum(w * gaps) / w.sum()
    n_eff = w.sum() ** 2 / np.sum(w**2)
    var = (np.sum(w * gaps**2) / w.sum() - mean**2) * n_eff / (n_eff - 1)
    post_mean = n_eff * mean / (n_eff + 2)
    post_var = (n_eff * var + 2 * 10.0**2) / (n_eff + 2)
    row = out.row(0, named=True)
    assert row["basis_status"] == "references"
    assert row["basis_n"] == 3
    assert row["basis_usd"] == pytest.approx(post_mean, rel=1e-12)
    assert row["basis_std_usd"] == pytest.approx(math.sqrt(post_var * (1 + 1 / n_eff)), rel=1e-12)


def test_references_count_only_once_published() -> None:
    spot = flat_spot(T0 - 120_000, T0 + 3 * QUARTER_MS + 1)
    rows = [(T0 + i * QUARTER_MS, 95_004.0 + i, "strike") for i in range(4)]
    late = refs(rows).with_columns(known_ts=pl.col("window_end_ts") + pl.when(pl.col("index_avg_usd") > 95_006.5)
                                   .then(60_000).otherwise(0))
    asof = [T0 + 2 * QUARTER_MS - 1, T0 + 2 * QUARTER_MS, T0 + 3 * QUARTER_MS, T0 + 3 * QUARTER_MS + 60_000]
    out = estimate_basis(spot, asof, references=late)
    assert out["basis_n"].to_list() == [2, 3, 3, 4]
    assert out["basis_status"].to_list() == ["insufficient_observations", "references", "references", "references"]
    assert out["basis_usd"][0] == 0.0 and out["basis_std_usd"][0] == 10.0
    # Values published after t change nothing at t.
    changed = late.with_columns(index_avg_usd=pl.when(pl.col("known_ts") > asof[2]).then(99_999.0)
                                .otherwise(pl.col("index_avg_usd")))
    assert estimate_basis(spot, asof[:3], references=changed).equals(out.head(3))


def test_minutes_without_coinbase_ticks_are_left_out() -> None:
    spot = flat_spot(T0 - 120_000, T0 + 1).vstack(flat_spot(T0 + 2 * QUARTER_MS - 120_000, T0 + 2 * QUARTER_MS + 1))
    gaps = reference_gaps(spot, refs([(T0, 95_003.0, "strike"), (T0 + QUARTER_MS, 95_001.0, "strike"),
                                     (T0 + 2 * QUARTER_MS, 95_002.0, "strike")]), BasisParams())
    assert gaps["window_end_ts"].to_list() == [T0, T0 + 2 * QUARTER_MS]
    assert gaps["gap_usd"].to_list() == pytest.approx([3.0, 2.0])


def test_coinbase_average_uses_the_sixty_seconds_before_the_end() -> None:
    ts = np.arange(T0 - 120_000, T0 + 60_000, 1_000, dtype=np.int64)
    mid = np.where(ts < T0 - 60_000, 100.0, np.where(ts < T0, 200.0, 300.0))
    average, marks = coinbase_window_average(ts, mid.astype(float), np.array([T0]), BasisParams())
    assert marks.tolist() == [60]
    assert average.tolist() == [200.0]  # ticks at and after the end are not in the window
    sparse_ts = ts[::10]
    average, marks = coinbase_window_average(sparse_ts, mid[::10].astype(float), np.array([T0]), BasisParams())
    assert marks[0] < 45 and np.isnan(average[0])  # ticks 10 s apart: most marks are older than 5 s


def simulated_index(seconds: int, seed: int = 3) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray, np.ndarray]:
    """Coinbase ticks at 4 Hz; BRTI at 1 Hz = Coinbase + a basis wandering over hours + print noise."""
    rng = np.random.default_rng(seed)
    sec = np.arange(seconds + 1, dtype=np.int64)
    cb = 95_000.0 + np.cumsum(rng.normal(0, 8.0, sec.shape[0]))
    basis = 6.0 * np.sin(2 * np.pi * sec / (4 * 3600.0))
    index = cb + basis + rng.normal(0, 1.5, sec.shape[0])
    tick_ts = T0 + np.arange(0, seconds * 1000, 250, dtype=np.int64)
    tick_mid = np.interp(tick_ts, T0 + sec * 1000, cb)
    spot = pl.DataFrame({"ts": tick_ts, "price": tick_mid, "best_bid": tick_mid - 0.005, "best_ask": tick_mid + 0.005})
    prints = pl.DataFrame({"ts": T0 + sec * 1000, "price": index})
    return spot, prints, basis, index


def test_index_prints_track_the_basis() -> None:
    spot, prints, basis, _ = simulated_index(6 * 3600)
    asof = T0 + np.arange(3600, 6 * 3600, 600, dtype=np.int64) * 1000
    out = estimate_basis(spot, asof, index_prints=prints)
    assert set(out["basis_status"]) == {"index"}
    truth = basis[(asof - T0) // 1000]
    assert np.max(np.abs(out["basis_usd"].to_numpy() - truth)) < 1.5
    assert out["basis_std_usd"].max() < 4.0  # type: ignore[operator]
    # No look-ahead: later prints and ticks do not change the estimate at t.
    t = int(asof[5])
    cut = estimate_basis(spot.filter(pl.col("ts") <= t), [t], index_prints=prints.filter(pl.col("ts") <= t))
    assert cut.row(0) == out.row(5)


def test_references_from_the_simulated_index_and_index_preferred() -> None:
    spot, prints, basis, index = simulated_index(6 * 3600, seed=4)
    ends = np.arange(QUARTER_MS, 6 * 3_600_000 + 1, QUARTER_MS, dtype=np.int64)
    secs = (ends // 1000)[:, None] + np.arange(-60, 0)[None, :]
    references = refs([(T0 + int(e), float(index[s].mean()), "strike") for e, s in zip(ends, secs, strict=True)])
    t = T0 + 6 * 3_600_000
    from_refs = estimate_basis(spot, [t], references=references)
    assert from_refs["basis_status"][0] == "references"
    assert from_refs["basis_n"][0] == 9  # [t − 2 h, t], both ends included
    recent = basis[(ends[-6:] // 1000) - 30].mean()
    assert from_refs["basis_usd"][0] == pytest.approx(recent, abs=2.5)
    both = estimate_basis(spot, [t], references=references, index_prints=prints)
    assert both["basis_status"][0] == "index"
    ignored = estimate_basis(spot, [t], references=references, index_prints=prints,
                             params=BasisParams(use_index=False))
    assert ignored.equals(from_refs)


def test_disabled_is_zero_and_empty_inputs_use_the_prior() -> None:
    spot = flat_spot(T0 - 120_000, T0 + 1)
    out = estimate_basis(spot, [T0], references=refs([(T0, 95_010.0, "strike")]), params=BasisParams(enabled=False))
    assert out.row(0) == (T0, 0.0, 0.0, 0, "disabled")
    empty = estimate_basis(spot.clear(), [T0, T0 + 1], references=refs([(T0, 95_010.0, "strike")]),
                           index_prints=pl.DataFrame({"ts": [T0], "price": [95_000.0]}))
    assert empty["basis_status"].to_list() == ["insufficient_observations"] * 2
    assert empty["basis_std_usd"].to_list() == [10.0, 10.0]


def test_mid_is_the_coinbase_side() -> None:
    spot = flat_spot(T0 - 60_000, T0)
    _, mid = spot_mid(spot)
    assert mid[0] == pytest.approx(95_000.0)  # the quote mid, not the last trade (+3)


@settings(max_examples=30, deadline=None)
@given(
    offsets_s=st.lists(st.integers(0, 6 * 3600), min_size=1, max_size=30),
    delays_s=st.lists(st.integers(0, 120), min_size=30, max_size=30),
    cut=st.floats(0.0, 1.0),
)
def test_property_rows_ignore_everything_after_their_asof(offsets_s: list[int], delays_s: list[int], cut: float) -> None:
    spot, prints, _, index = simulated_index(6 * 3600 + 120, seed=9)
    ends = T0 + np.array(sorted(set(offsets_s)), dtype=np.int64) * 1000 + 60_000
    references = pl.DataFrame(
        {
            "window_end_ts": ends,
            "index_avg_usd": index[(ends - T0) // 1000 - 30],
            "known_ts": ends + np.array(delays_s[: ends.shape[0]], dtype=np.int64) * 1000,
        }
    )
    t = int(T0 + cut * 6 * 3_600_000)
    params = BasisParams(min_observations=1, index_min_minutes=1, lookback_s=6 * 3600)
    full = estimate_basis(spot, [t], references=references, index_prints=prints, params=params)
    past = estimate_basis(
        spot.filter(pl.col("ts") <= t),
        [t],
        references=references.filter(pl.col("known_ts") <= t),
        index_prints=prints.filter(pl.col("ts") <= t),
        params=params,
    )
    assert full.equals(past)
    refs_only = estimate_basis(spot, [t], references=references, params=params)
    refs_past = estimate_basis(spot.filter(pl.col("ts") <= t), [t], references=references.filter(pl.col("known_ts") <= t),
                               params=params)
    assert refs_only.equals(refs_past)
