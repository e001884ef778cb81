"""Property tests must hold when other threads of the worker draw from the global `random`.

Prefect's loop services, docket and websockets' keepalive pings do, in the background of any worker that has
run a flow; Hypothesis took the moving global state for a strategy using `random`, and with warnings as errors
aborted a draw and failed an unrelated property test as flaky (pyproject.toml's `filterwarnings` says why).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def background_random_draws() -> Iterator[None]:
    """A thread drawing from the global `random` for as long as the test runs."""
    stop = threading.Event()

    def draw() -> None:
        while not stop.is_set():
            random.random()
            stop.wait(0)

    thread = threading.Thread(target=draw, name="global-random-drawer", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


@settings(max_examples=300, deadline=None)
@given(values=st.dictionaries(st.text(max_size=5), st.integers(), max_size=6), drop=st.sets(st.integers(), max_size=4))
def test_draws_survive_a_thread_using_global_random(
    background_random_draws: None, values: dict[str, int], drop: set[int]
) -> None:
    """The draws are what is tested (they failed as flaky before the filter); the body checks what they gave."""
    assert all(isinstance(key, str) and len(key) <= 5 for key in values) and len(values) <= 6 and len(drop) <= 4
