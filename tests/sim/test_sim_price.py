"""The price path is deterministic per seed, 1 Hz for the index, and Coinbase = index + basis + tick noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kbtc.sim.price import GbmSpotSource, PriceConfig, load_spot_tape

START_MS = 1_790_000_000_000


def test_same_seed_same_path_regardless_of_query_order() -> None:
    a = GbmSpotSource(PriceConfig(seed=5, jumps_per_day=50), START_MS)
    b = GbmSpotSource(PriceConfig(seed=5, jumps_per_day=50), START_MS)
    late, early = START_MS + 5 * 3600_000, START_MS - 86400_000
    first = (a.index_usd(late), a.coinbase_usd(early))
    second = (b.coinbase_usd(early), b.index_usd(late))
    assert first == (second[1], second[0])
    other = GbmSpotSource(PriceConfig(seed=6), START_MS)
    assert other.index_usd(late) != a.index_usd(late)


def test_start_price_is_exact_and_history_covers_the_warmup() -> None:
    source = GbmSpotSource(PriceConfig(seed=1, start_price_usd=65_000.0), START_MS)
    assert source.index_usd(START_MS) == pytest.approx(65_000.0, abs=1e-6)
    assert source.origin_ms == START_MS - 2 * 86400_000
    assert source.index_usd(source.origin_ms) > 0
    with pytest.raises(ValueError, match="origin"):
        source.index_usd(source.origin_ms - 1000)


def test_index_is_constant_within_a_second_and_moves_between_seconds() -> None:
    source = GbmSpotSource(PriceConfig(seed=2), START_MS)
    second = START_MS + 10_000
    assert source.index_usd(second) == source.index_usd(second + 999)
    prints = source.index_at_seconds(np.arange(second // 1000, second // 1000 + 600))
    assert len(np.unique(prints)) > 590


def test_realised_volatility_matches_the_configured_one() -> None:
    source = GbmSpotSource(PriceConfig(seed=3, vol_annual=0.6), START_MS)
    seconds = np.arange(source.origin_s, source.origin_s + 2 * 86400)
    returns = np.diff(np.log(source.index_at_seconds(seconds)))
    realised = returns.std() * np.sqrt(365 * 86400)
    assert realised == pytest.approx(0.6, rel=0.03)


def test_coinbase_basis_is_a_few_dollars_and_changes_sign() -> None:
    source = GbmSpotSource(PriceConfig(seed=4, basis_sd_usd=4.0, tick_noise_usd=1.0), START_MS)
    times = range(source.origin_ms, START_MS, 60_000)
    basis = np.array([source.basis_usd(t) for t in times])
    assert np.abs(basis).max() < 25
    assert (basis > 0).any() and (basis < 0).any()
    gaps = np.array([source.coinbase_usd(t + 123) - source.index_usd(t + 123) for t in list(times)[:500]])
    assert 0.5 < np.abs(gaps).mean() < 15
    assert all(round(source.coinbase_usd(t), 2) == source.coinbase_usd(t) for t in list(times)[:50])


def test_coinbase_noise_is_deterministic_per_bucket() -> None:
    source = GbmSpotSource(PriceConfig(seed=9), START_MS)
    assert source.coinbase_usd(START_MS + 10) == GbmSpotSource(PriceConfig(seed=9), START_MS).coinbase_usd(START_MS + 10)


def test_average_60s_is_the_mean_of_the_60_prints_ending_at_the_second() -> None:
    source = GbmSpotSource(PriceConfig(seed=2), START_MS)
    end = START_MS + 3600_000
    prints = [source.index_usd(end - k * 1000) for k in range(60)]
    assert source.average_60s(end) == pytest.approx(sum(prints) / 60, rel=1e-12)


def test_replay_follows_the_tape_then_continues_from_its_last_print(tmp_path: Path) -> None:
    origin_s = START_MS // 1000 - 3600
    rows = [(origin_s * 1000 + 250, 60_000.0), (origin_s * 1000 + 900, 60_010.0), ((origin_s + 3) * 1000, 60_020.5)]
    rows += [((origin_s + k) * 1000 + 10, 60_000.0 + k) for k in range(5, 5000)]
    tape_file = tmp_path / "spot.csv"
    pl.DataFrame({"ts": [r[0] for r in reversed(rows)], "price": [r[1] for r in reversed(rows)]}).write_csv(tape_file)
    tape = load_spot_tape(tape_file)
    assert tape[:5].tolist() == [60_010.0, 60_010.0, 60_010.0, 60_020.5, 60_020.5]  # last print per second, filled
    source = GbmSpotSource(PriceConfig(seed=1, warmup_s=3600), START_MS, tape_usd=tape)
    assert source.index_usd(origin_s * 1000) == pytest.approx(60_010.0)
    assert source.index_usd((origin_s + 4000) * 1000 + 500) == pytest.approx(64_000.0)
    after = source.index_at_seconds(np.arange(origin_s + 4999, origin_s + 5100))
    assert after[0] == pytest.approx(64_999.0)
    assert np.abs(after - 64_999.0).max() < 500 and len(np.unique(after)) > 90
    with pytest.raises(ValueError, match="price column"):
        bad = tmp_path / "bad.csv"
        pl.DataFrame({"ts": [1], "value": [2.0]}).write_csv(bad)
        load_spot_tape(bad)


def test_replay_reads_kbtcs_own_frame_tape(tmp_path: Path) -> None:
    from kbtc.pipeline.tape import TapeWriter

    writer = TapeWriter(tmp_path, "coinbase")
    base = 1_790_000_000_000
    ticker = {"channel": "ticker", "events": [{"type": "update", "tickers": [{"product_id": "BTC-USD", "price": "64000.5"}]}]}
    trades = {"channel": "market_trades", "events": [{"trades": [{"price": "64001.25"}, {"price": "64002"}]}]}
    writer.write(json.dumps(ticker), base + 100)
    writer.write("{torn", base + 200)
    writer.write(json.dumps({"channel": "heartbeats", "events": [{"heartbeat_counter": 3}]}), base + 300)
    writer.write(json.dumps(trades), base + 2500)
    writer.write(json.dumps({"type": "ticker", "price": "64010.00"}), base + 3100)
    writer.close()
    assert load_spot_tape(tmp_path).tolist() == [64000.5, 64000.5, 64002.0, 64010.0]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no prices"):
        load_spot_tape(empty)
