"""Wire formatting and the deterministic tape, without sockets."""

from __future__ import annotations

import time
from datetime import datetime

import numpy as np
import pytest
from coinbase_support import WalkSource

from kbtc.sim.coinbase.candles import CandleBook
from kbtc.sim.coinbase.hashing import uniform
from kbtc.sim.coinbase.tape import MINUTE_MS, Tape
from kbtc.sim.coinbase.wire_format import decimal_str, go_time_string, rfc3339_micro, rfc3339_nano

# 2023-02-09T20:30:37.167359596Z, the envelope timestamp of the documented ticker sample
SAMPLE_NS = 1675974637_167359596


@pytest.mark.parametrize(
    ("value", "places", "text"),
    [(140.21, 2, "140.21"), (15460.0, 2, "15460"), (0.3, 8, "0.3"), (1e-8, 8, "0.00000001"), (-0.0, 2, "0"),
     (-4.15775596190603, 14, "-4.15775596190603")],
)
def test_decimal_strings_drop_trailing_zeros(value: float, places: int, text: str) -> None:
    assert decimal_str(value, places) == text


def test_times_are_written_as_coinbase_writes_them() -> None:
    assert rfc3339_nano(SAMPLE_NS) == "2023-02-09T20:30:37.167359596Z"
    assert rfc3339_nano(1675974637_390000000) == "2023-02-09T20:30:37.39Z"  # Go trims trailing zeros
    assert rfc3339_nano(1675974637_000000000) == "2023-02-09T20:30:37Z"
    assert rfc3339_micro(SAMPLE_NS) == "2023-02-09T20:30:37.167359Z"
    assert go_time_string(SAMPLE_NS, 91717_525857105) == "2023-02-09 20:30:37.167359596 +0000 UTC m=+91717.525857105"
    assert datetime.fromisoformat(rfc3339_nano(SAMPLE_NS)).microsecond == 167359


def test_uniform_draws_depend_only_on_seed_stream_and_key() -> None:
    keys = np.arange(10_000)
    draws = uniform(3, 1, keys)
    assert np.array_equal(draws, uniform(3, 1, keys[::-1])[::-1])  # order of asking does not matter
    assert not np.array_equal(draws, uniform(4, 1, keys)) and not np.array_equal(draws, uniform(3, 2, keys))
    assert draws.min() >= 0.0 and draws.max() < 1.0
    assert abs(draws.mean() - 0.5) < 0.02  # roughly uniform


def test_ticks_are_a_function_of_their_grid_index() -> None:
    now_ms = int(time.time() * 1000)
    first, second = (Tape(WalkSource(7), seed=1, ticks_per_second=4, empty_minute_fraction=0.0) for _ in range(2))
    index = first.tick_index_at(now_ms)
    assert [first.tick(k) for k in range(index - 3, index + 1)] == [second.tick(k) for k in range(index, index - 4, -1)][::-1]
    tick = first.tick(index)
    assert tick.time_ms == index * 250 and tick.trades
    assert tick.best_bid_usd <= tick.price_usd <= tick.best_ask_usd and tick.best_bid_usd < tick.best_ask_usd
    ids = [t.trade_id for k in range(index - 20, index + 1) for t in first.tick(k).trades]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_empty_minutes_have_no_trades_and_no_candle() -> None:
    now_ms = int(time.time() * 1000)
    tape = Tape(WalkSource(7), seed=5, ticks_per_second=4, empty_minute_fraction=0.5)
    minutes = np.arange(now_ms - now_ms % MINUTE_MS - 60 * MINUTE_MS, now_ms - now_ms % MINUTE_MS, MINUTE_MS)
    trading = tape.trading_minutes(minutes)
    assert 10 < trading.sum() < 50
    empty_minute = int(minutes[~trading][0])
    assert all(not tape.tick(k).trades for k in range(empty_minute // 250, (empty_minute + MINUTE_MS) // 250))
    bars = CandleBook(tape).minutes(int(minutes[0]), int(minutes[-1]), now_ms)
    assert bars["start_ms"].to_list() == minutes[trading].tolist()
    assert (bars["volume"] > 0).all()
