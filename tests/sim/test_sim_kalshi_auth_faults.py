"""Signature verification, the fault plan, and REST faults observable by a plain HTTP client."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sim_support import fast_config

from kbtc.sim.faults import FaultKind, FaultPlan, FaultTarget
from kbtc.sim.kalshi.auth import ApiKey, sign
from kbtc.sim.simulator import ManualClock, Simulator

PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY_ID = "a952bcbe-ec3b-4b5b-b8f9-11dae589608c"


def signed(private: rsa.RSAPrivateKey, ts_ms: int, method: str, path: str) -> dict[str, str]:
    return {"KALSHI-ACCESS-KEY": KEY_ID, "KALSHI-ACCESS-TIMESTAMP": str(ts_ms),
            "KALSHI-ACCESS-SIGNATURE": sign(private, ts_ms, method, path)}


async def test_signatures_accepted_and_rejected(clock: ManualClock) -> None:
    config = fast_config(api_keys=(ApiKey(KEY_ID, PRIVATE.public_key()),))
    async with Simulator(config, clock=clock) as sim, httpx.AsyncClient() as client:
        url = sim.kalshi_rest_url + "/markets"
        path = "/trade-api/v2/markets"
        now = clock()
        ok = await client.get(url, params={"limit": 2}, headers=signed(PRIVATE, now, "GET", path + "?limit=2"))
        assert ok.status_code == 200
        cases = {
            "missing": {},
            "wrong key": signed(OTHER, now, "GET", path),
            "seconds timestamp": signed(PRIVATE, now // 1000, "GET", path),
            "stale": signed(PRIVATE, now - 60_000, "GET", path),
            "wrong path": signed(PRIVATE, now, "GET", "/markets"),
            "unknown key id": {**signed(PRIVATE, now, "GET", path), "KALSHI-ACCESS-KEY": "nope"},
            "garbage": {**signed(PRIVATE, now, "GET", path), "KALSHI-ACCESS-SIGNATURE": "%%%"},
        }
        for name, headers in cases.items():
            response = await client.get(url, headers=headers)
            assert response.status_code == 401, name
            assert set(response.json()) == {"code", "message", "details"}, name


def test_fault_plan_counts_and_consumes_in_order() -> None:
    plan = FaultPlan()
    first = plan.inject("kalshi_rest", "http_5xx", count=2, status=500)
    plan.inject(FaultTarget.KALSHI_REST, FaultKind.HTTP_5XX)
    assert plan.take(FaultTarget.KALSHI_WS, FaultKind.HTTP_5XX) is None
    assert plan.take(FaultTarget.KALSHI_REST, FaultKind.HTTP_5XX) is first
    assert plan.take(FaultTarget.KALSHI_REST, FaultKind.HTTP_5XX) is first
    second = plan.take(FaultTarget.KALSHI_REST, FaultKind.HTTP_5XX)
    assert second is not None and second is not first
    assert plan.take(FaultTarget.KALSHI_REST, FaultKind.HTTP_5XX) is None
    assert plan.summary() == {"kalshi_rest/http_5xx": {"injected": 3, "applied": 3}}
    plan.inject("kalshi_ws", "stall", duration_s=1.5)
    assert len(plan.pending(FaultTarget.KALSHI_WS)) == 1 and not plan.pending(FaultTarget.KALSHI_REST)
    plan.clear()
    assert plan.pending() == []
    with pytest.raises(ValueError):
        plan.inject("kalshi_ws", "stall", count=0)
    with pytest.raises(ValueError):
        plan.inject("kalshi_ws", "no_such_fault")


async def test_rest_faults_through_the_control_endpoint(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.kalshi_rest_url) as api, \
            httpx.AsyncClient(base_url=sim.control_url) as control:

        async def inject(kind: str, **extra: object) -> None:
            response = await control.post("/faults", json={"target": "kalshi_rest", "kind": kind, **extra})
            assert response.status_code == 200, response.text

        await inject("http_429", count=3)
        burst = [await api.get("/exchange/status") for _ in range(4)]
        assert [r.status_code for r in burst] == [429, 429, 429, 200]
        assert burst[0].json() == {"error": "too many requests"} and "retry-after" not in burst[0].headers

        await inject("http_5xx", params={"status": 502})
        assert (await api.get("/exchange/status")).status_code == 502

        await inject("malformed_json")
        broken = await api.get("/markets", params={"limit": 3})
        with pytest.raises(json.JSONDecodeError):
            json.loads(broken.text)

        await inject("unknown_fields")
        extra = (await api.get("/markets", params={"limit": 3})).json()["markets"]
        assert all("sim_unknown_field" in m for m in extra)

        await inject("missing_fields")
        bare = (await api.get("/markets", params={"limit": 3})).json()["markets"]
        assert all("yes_sub_title" not in m and "ticker" in m for m in bare)

        await inject("slow_response", duration_s=0.3)
        started = time.monotonic()
        assert (await api.get("/exchange/status")).status_code == 200
        slow = time.monotonic() - started
        assert slow >= 0.3

        assert (await control.post("/faults", json={"target": "kalshi_rest", "kind": "nope"})).status_code == 400
        summary = (await control.get("/faults")).json()
        assert summary["summary"]["kalshi_rest/http_429"] == {"injected": 3, "applied": 3}
        assert summary["pending"] == []


async def test_control_closes_a_market_early(sim: Simulator, clock: ManualClock) -> None:
    async with httpx.AsyncClient(base_url=sim.kalshi_rest_url) as api, \
            httpx.AsyncClient(base_url=sim.control_url) as control:
        market = (await api.get("/markets", params={"series_ticker": "KXBTCD", "status": "open"})).json()["markets"][0]
        assert (await control.post(f"/markets/{market['ticker']}/close", content=b"not json")).status_code == 400
        closed = await control.post(f"/markets/{market['ticker']}/close", json={"close_ts": clock() // 1000})
        assert closed.json()["status"] == "closed"
        after = (await api.get(f"/markets/{market['ticker']}")).json()["market"]
        assert after["status"] == "closed" and after["close_time"] != market["close_time"]
        assert (await api.get(f"/markets/{market['ticker']}/orderbook")).json()["orderbook_fp"] == {
            "yes_dollars": [], "no_dollars": []}
        state = (await control.get("/state")).json()
        assert state["now_ms"] == clock() and state["index_usd"] > 0
