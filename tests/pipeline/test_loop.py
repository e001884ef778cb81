"""Bounded loops: grid ticks, skipped ticks, transient failures absorbed, others raised, early stop."""

from __future__ import annotations

import threading

import httpx
import pytest

from kbtc.pipeline.loop import run_bounded_loop


class FakeClock:
    """A clock that only moves when the loop waits or a step takes time."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class ClockEvent(threading.Event):
    """A stop event whose wait advances the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        self.clock.now += timeout or 0.0
        return self.is_set()


def test_ticks_on_a_fixed_grid_for_the_duration() -> None:
    clock = FakeClock()
    seen: list[int] = []
    result = run_bounded_loop(seen.append, interval_s=10, duration_s=60, stop=ClockEvent(clock), clock=clock)
    assert result.iterations == 7
    assert [t - seen[0] for t in seen] == [0, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000]


def test_zero_duration_runs_once() -> None:
    clock = FakeClock()
    result = run_bounded_loop(lambda ts: ts, interval_s=10, duration_s=0, stop=ClockEvent(clock), clock=clock)
    assert result.iterations == 1 and result.results == [1_000_000]


def test_slow_iterations_skip_missed_ticks() -> None:
    clock = FakeClock()
    seen: list[int] = []

    def slow(ts: int) -> None:
        seen.append(ts)
        clock.now += 25  # longer than two intervals

    result = run_bounded_loop(slow, interval_s=10, duration_s=60, stop=ClockEvent(clock), clock=clock)
    assert [t - seen[0] for t in seen] == [0, 30_000, 60_000]
    assert result.skipped_ticks == 4


def test_transient_failures_are_absorbed_until_too_many_in_a_row() -> None:
    clock = FakeClock()
    calls = {"n": 0}

    def flaky(ts: int) -> int:
        calls["n"] += 1
        if calls["n"] in (2, 3):
            raise httpx.ReadTimeout("slow venue")
        return ts

    result = run_bounded_loop(flaky, interval_s=10, duration_s=40, stop=ClockEvent(clock), clock=clock)
    assert result.iterations == 5 and result.failures == 2 and len(result.results) == 3

    def always_down(ts: int) -> int:
        raise httpx.ConnectError("down")

    with pytest.raises(httpx.ConnectError):
        run_bounded_loop(always_down, interval_s=10, duration_s=600, stop=ClockEvent(clock), clock=clock,
                         max_consecutive_failures=3)


def test_bad_input_is_raised_at_once() -> None:
    clock = FakeClock()

    def broken(ts: int) -> int:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        run_bounded_loop(broken, interval_s=10, duration_s=60, stop=ClockEvent(clock), clock=clock)


def test_stop_event_ends_the_loop_after_the_current_iteration() -> None:
    clock = FakeClock()
    stop = ClockEvent(clock)
    seen: list[int] = []

    def step(ts: int) -> None:
        seen.append(ts)
        if len(seen) == 2:
            stop.set()

    run_bounded_loop(step, interval_s=10, duration_s=600, stop=stop, clock=clock)
    assert len(seen) == 2
