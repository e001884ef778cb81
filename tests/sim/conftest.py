"""Fixtures for the simulator tests: a simulator on free loopback ports with a hand-moved clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sim_support import START_MS, fast_config

from kbtc.sim.simulator import ManualClock, Simulator


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[Simulator]:
    async with Simulator(fast_config(), clock=clock) as simulator:
        yield simulator
