"""The simulated candle endpoints over HTTP: shapes, limits, ordering, gaps, paging and determinism."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from coinbase_support import SAMPLES, running_sim

AT_PATH = "/api/v3/brokerage/market/products/BTC-USD/candles"
EX_PATH = "/products/BTC-USD/candles"
AT_ERROR_KEYS = {"error", "code", "message", "details"}


def past_minute_s(minutes_ago: int) -> int:
    """A whole minute well in the past (so the candles there are complete)."""
    now_s = int(time.time())
    return now_s - now_s % 60 - minutes_ago * 60


async def get(base_url: str, path: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        return await client.get(path, params=params)


async def test_advanced_trade_candles_match_the_sample_newest_first_with_gaps() -> None:
    sample_row = json.loads((SAMPLES / "advanced_trade_rest_public_candles.json").read_text())["candles"][0]
    start = past_minute_s(400)
    async with running_sim(empty_minute_fraction=0.2) as (sim, _):
        response = await get(sim.rest_url, AT_PATH, start=start, end=start + 350 * 60, granularity="ONE_MINUTE")
    assert response.status_code == 200
    candles = response.json()["candles"]
    assert all(list(c) == list(sample_row) and all(isinstance(v, str) for v in c.values()) for c in candles)
    starts = [int(c["start"]) for c in candles]
    assert starts == sorted(starts, reverse=True) and len(set(starts)) == len(starts)
    assert all(start <= s < start + 350 * 60 and s % 60 == 0 for s in starts)
    # Minutes without trades are absent (a fifth of them here), not zero-volume rows.
    assert 200 < len(candles) < 340
    for c in candles:
        low, high, open_, close = (float(c[k]) for k in ("low", "high", "open", "close"))
        assert low <= min(open_, close) <= max(open_, close) <= high
        assert float(c["volume"]) > 0


async def test_exchange_candles_are_rows_of_numbers_newest_first_and_agree_with_advanced_trade() -> None:
    start = past_minute_s(400)
    async with running_sim(empty_minute_fraction=0.2) as (sim, _):
        rows = (await get(sim.rest_url, EX_PATH, granularity=60, start=start, end=start + 300 * 60)).json()
        at = (await get(sim.rest_url, AT_PATH, start=start, end=start + 300 * 60, granularity="ONE_MINUTE")).json()
    assert all(len(r) == 6 and isinstance(r[0], int) and all(isinstance(v, float) for v in r[1:]) for r in rows)
    assert [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True)
    # [time, low, high, open, close, volume] — low before high (§3.2)
    assert [[r[0], *r[1:]] for r in rows] == [
        [int(c["start"]), float(c["low"]), float(c["high"]), float(c["open"]), float(c["close"]), float(c["volume"])]
        for c in at["candles"]
    ]


async def test_exchange_without_start_and_end_returns_the_latest_300_buckets() -> None:
    async with running_sim() as (sim, _):
        rows = (await get(sim.rest_url, EX_PATH, granularity=60, start=past_minute_s(10))).json()  # end missing
    now_s = int(time.time())
    assert 280 < len(rows) <= 300
    assert rows[0][0] >= now_s - now_s % 60 - 60  # ends at the current (forming) minute
    assert rows[-1][0] >= now_s - 301 * 60


@pytest.mark.parametrize(
    ("path", "params", "status", "fragment"),
    [
        (AT_PATH, {"start": 0, "end": 351 * 60, "granularity": "ONE_MINUTE"}, 400, "350"),
        (AT_PATH, {"start": 0, "end": 60, "granularity": "ONE_MINUTE", "limit": 351}, 400, "limit"),
        (AT_PATH, {"end": 60, "granularity": "ONE_MINUTE"}, 400, "start"),
        (AT_PATH, {"start": 0, "end": 60, "granularity": "60"}, 400, "granularity"),
        ("/api/v3/brokerage/market/products/ETH-EUR/candles", {"start": 0, "end": 60, "granularity": "ONE_MINUTE"},
         404, "product"),
        (EX_PATH, {"start": 0, "end": 301 * 60, "granularity": 60}, 400, "exceeds 300"),
        (EX_PATH, {"granularity": 120}, 400, "granularity"),
        (EX_PATH, {"start": 600, "end": 0, "granularity": 60}, 400, "start"),
    ],
)
async def test_requests_beyond_the_limits_are_rejected_in_the_venue_error_shape(
    path: str, params: dict[str, Any], status: int, fragment: str
) -> None:
    async with running_sim() as (sim, _):
        response = await get(sim.rest_url, path, **params)
    assert response.status_code == status
    body = response.json()
    if path.startswith("/api"):
        assert set(body) == AT_ERROR_KEYS and isinstance(body["code"], int) and isinstance(body["details"], list)
    else:
        assert set(body) == {"message"}
    assert fragment in body["message"]


async def test_the_limits_themselves_are_accepted() -> None:
    start = past_minute_s(700)
    async with running_sim(empty_minute_fraction=0.0) as (sim, _):
        at = await get(sim.rest_url, AT_PATH, start=start, end=start + 350 * 60, granularity="ONE_MINUTE")
        ex = await get(sim.rest_url, EX_PATH, start=start, end=start + 300 * 60, granularity=60)
        limited = await get(sim.rest_url, AT_PATH, start=start, end=start + 350 * 60, granularity="ONE_MINUTE",
                            limit=10)
    assert at.status_code == 200 and len(at.json()["candles"]) == 350
    assert limited.json()["candles"] == at.json()["candles"][:10]  # the newest ten
    assert ex.status_code == 200 and len(ex.json()) == 300


async def test_consecutive_pages_tile_the_range_without_overlap() -> None:
    start = past_minute_s(800)
    async with running_sim(empty_minute_fraction=0.0) as (sim, _):
        pages = [
            (await get(sim.rest_url, AT_PATH, start=s, end=s + 350 * 60, granularity="ONE_MINUTE")).json()["candles"]
            for s in (start, start + 350 * 60)
        ]
    starts = [int(c["start"]) for page in pages for c in page]
    assert sorted(starts) == list(range(start, start + 700 * 60, 60))


async def test_coarse_candles_aggregate_the_minutes() -> None:
    start = past_minute_s(600) // 3600 * 3600
    async with running_sim(empty_minute_fraction=0.1) as (sim, _):
        minutes = (await get(sim.rest_url, AT_PATH, start=start, end=start + 300 * 60,
                             granularity="ONE_MINUTE")).json()["candles"]
        fives = (await get(sim.rest_url, AT_PATH, start=start, end=start + 300 * 60,
                           granularity="FIVE_MINUTE")).json()["candles"]
    assert len(fives) == 60
    for five in fives:
        inside = sorted((c for c in minutes if 0 <= int(c["start"]) - int(five["start"]) < 300),
                        key=lambda c: int(c["start"]))
        assert five["low"] == min((c["low"] for c in inside), key=float)
        assert five["high"] == max((c["high"] for c in inside), key=float)
        assert five["open"] == inside[0]["open"] and five["close"] == inside[-1]["close"]
        assert float(five["volume"]) == pytest.approx(sum(float(c["volume"]) for c in inside), abs=1e-7)


async def test_candles_are_deterministic_per_seed() -> None:
    start = past_minute_s(500)
    params = {"start": start, "end": start + 200 * 60, "granularity": "ONE_MINUTE"}
    bodies = []
    for seed in (11, 11, 12):
        async with running_sim(seed=seed) as (sim, _):
            bodies.append((await get(sim.rest_url, AT_PATH, **params)).json())
    assert bodies[0] == bodies[1]
    assert bodies[0] != bodies[2]  # the seed draws the volumes and the empty minutes


async def test_no_candles_beyond_the_history() -> None:
    async with running_sim(candle_history_s=3600) as (sim, _):
        old = (await get(sim.rest_url, AT_PATH, start=past_minute_s(300), end=past_minute_s(100),
                         granularity="ONE_MINUTE")).json()
        recent = (await get(sim.rest_url, AT_PATH, start=past_minute_s(100), end=past_minute_s(0),
                            granularity="ONE_MINUTE")).json()
    assert old == {"candles": []}
    assert 0 < len(recent["candles"]) <= 61
