"""REST client against httpx.MockTransport: paging, filters, retries, token bucket, typed errors, signing."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from kalshi_samples import sample

from kbtc.config import load_settings
from kbtc.venues.kalshi.auth import KalshiSigner
from kbtc.venues.kalshi.errors import (
    KalshiApiError,
    KalshiAuthError,
    KalshiPayloadError,
    KalshiRetriesExhaustedError,
)
from kbtc.venues.kalshi.ratelimit import TokenBucket, shared_read_bucket
from kbtc.venues.kalshi.rest import KalshiRestClient, RetryPolicy, market_filters, rest_client_from_settings

BASE = "http://kalshi.test/trade-api/v2"
Handler = Callable[[httpx.Request], httpx.Response]


class FakeSleep:
    """Records requested sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def _client(handler: Handler, **kwargs: Any) -> tuple[KalshiRestClient, FakeSleep]:
    sleep = FakeSleep()
    bucket = kwargs.pop("bucket", TokenBucket(1e9, 1e9))
    client = KalshiRestClient(BASE, transport=httpx.MockTransport(handler), sleep=sleep, bucket=bucket, **kwargs)
    return client, sleep


def _markets(n: int) -> list[dict[str, Any]]:
    template = sample("event_with_nested_markets_shape.json")["markets"][0]
    return [{**template, "ticker": f"KXBTCD-26AUG1717-T{70000 + i}.99"} for i in range(n)]


async def test_markets_page_to_completion_repeating_filters() -> None:
    markets = _markets(7)
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        seen.append(params)
        start = int(params.get("cursor") or 0)
        limit = int(params["limit"])
        page = markets[start : start + limit]
        cursor = str(start + limit) if start + limit < len(markets) else ""
        return httpx.Response(200, json={"markets": page, "cursor": cursor})

    client, _ = _client(handler)
    async with client:
        got = await client.list_markets(series_ticker="KXBTCD", status="open", limit=3)
    assert [m["ticker"] for m in got] == [m["ticker"] for m in markets]
    assert len(seen) == 3 and all(p["series_ticker"] == "KXBTCD" and p["status"] == "open" for p in seen)
    assert [p.get("cursor") for p in seen] == [None, "3", "6"]


def test_market_filter_rules() -> None:
    assert market_filters(status="settled", min_settled_ts=1, max_settled_ts=2, tickers=["A", "B"]) == {
        "status": "settled", "min_settled_ts": 1, "max_settled_ts": 2, "tickers": "A,B"}
    for bad in (
        {"status": "active"},  # a response status, not a filter value
        {"status": "open", "min_close_ts": 1},
        {"min_close_ts": 1, "min_settled_ts": 2},
        {"min_updated_ts": 1},
        {"max_foo_ts": 1},
    ):
        with pytest.raises(ValueError):
            market_filters(**bad)
    assert market_filters(min_updated_ts=5, mve_filter="exclude", series_ticker="S")["min_updated_ts"] == 5


async def test_429_storm_completes_with_backoff() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] <= 4:
            return httpx.Response(429, json={"error": "too many requests"})  # no Retry-After (§6)
        return httpx.Response(200, json={"market": _markets(1)[0]})

    client, sleep = _client(handler)
    async with client:
        market = await client.get_market("KXBTCD-26AUG1717-T70000.99")
    assert market["ticker"] == "KXBTCD-26AUG1717-T70000.99"
    assert len(sleep.calls) == 4 and client.retries == 4
    assert all(0 < d <= 8.0 for d in sleep.calls) and sleep.calls[3] >= 2.0  # doubling, capped, jittered


async def test_5xx_timeouts_then_exhaustion() -> None:
    responses: list[Any] = [httpx.ReadTimeout("slow"), httpx.Response(502, text="bad gateway"),
                            httpx.ConnectError("refused"), httpx.Response(200, json={"cutoff": 1})]

    def handler(request: httpx.Request) -> httpx.Response:
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    client, sleep = _client(handler)
    async with client:
        assert await client.get_historical_cutoff() == {"cutoff": 1}
    assert len(sleep.calls) == 3

    client, sleep = _client(lambda r: httpx.Response(503, text="down"), retry=RetryPolicy(max_attempts=3))
    async with client:
        with pytest.raises(KalshiRetriesExhaustedError, match=r"3 times.*503"):
            await client.get_market("M")
    assert len(sleep.calls) == 2


@pytest.mark.parametrize(
    "response",
    [httpx.Response(200, text="<html>oops"), httpx.Response(200, json=[1, 2]),
     httpx.Response(200, json={"markets": "nope"})],
)
async def test_malformed_pages_raise_payload_error(response: httpx.Response) -> None:
    client, sleep = _client(lambda r: response)
    async with client:
        with pytest.raises(KalshiPayloadError) as info:
            await client.list_markets(series_ticker="KXBTC")
    assert info.value.raw and not sleep.calls  # bad input is never retried


async def test_repeated_cursor_is_an_error() -> None:
    client, _ = _client(lambda r: httpx.Response(200, json={"markets": [], "cursor": "same"}))
    async with client:
        with pytest.raises(KalshiPayloadError, match="repeated"):
            await client.list_markets()


async def test_4xx_are_typed_and_not_retried() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/markets/NOPE"):
            return httpx.Response(404, json={"code": "not_found", "message": "market not found", "details": ""})
        return httpx.Response(401, json={"code": "authentication_error", "message": "invalid signature"})

    client, sleep = _client(handler)
    async with client:
        with pytest.raises(KalshiApiError) as api:
            await client.get_market("NOPE")
        assert (api.value.status_code, api.value.code, api.value.message) == (404, "not_found", "market not found")
        with pytest.raises(KalshiAuthError, match=r"401.*invalid signature.*KALSHI_API_KEY_ID"):
            await client.get_series("KXBTC")
    assert not sleep.calls


async def test_requests_are_signed_over_the_path_without_query(
    rsa_key: rsa.RSAPrivateKey, rsa_pem: bytes
) -> None:
    verified: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ts = request.headers["KALSHI-ACCESS-TIMESTAMP"]
        message = f"{ts}GET{request.url.path}".encode()
        rsa_key.public_key().verify(
            base64.b64decode(request.headers["KALSHI-ACCESS-SIGNATURE"]), message,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256(),
        )
        verified.append(request.url.path)
        return httpx.Response(200, json={"orderbooks": [{"ticker": "A", "orderbook_fp": {}}]})

    client, _ = _client(handler, signer=KalshiSigner.from_pem("key", rsa_pem))
    async with client:
        books = await client.get_orderbooks([f"T{i}" for i in range(150)])
    assert verified == ["/trade-api/v2/markets/orderbooks"] * 2 and len(books) == 2


async def test_token_bucket_paces_requests() -> None:
    now = {"t": 0.0}

    async def sleep(seconds: float) -> None:
        now["t"] += seconds

    bucket = TokenBucket(200.0, 400.0, clock=lambda: now["t"], sleep=sleep)  # Basic: 20 req/s, 2 s burst
    for _ in range(40):
        assert await bucket.acquire() == 0.0
    waits = [await bucket.acquire() for _ in range(20)]
    assert sum(waits) == pytest.approx(1.0) and now["t"] == pytest.approx(1.0)


async def test_clients_of_a_process_share_one_bucket_per_base_url() -> None:
    settings = load_settings(KALSHI_REST_URL="http://shared.test/trade-api/v2", KALSHI_READS_PER_SECOND=7)
    first, second = rest_client_from_settings(settings), rest_client_from_settings(settings)
    other = rest_client_from_settings(load_settings(KALSHI_REST_URL="http://other.test/trade-api/v2"))
    try:
        assert first.bucket is second.bucket is shared_read_bucket("http://shared.test/trade-api/v2/", 7)
        assert first.bucket.rate_per_s == 70.0 and other.bucket is not first.bucket
    finally:
        for client in (first, second, other):
            await client.aclose()


def test_a_shared_bucket_paces_every_event_loop_and_thread() -> None:
    bucket = TokenBucket(1000.0, 10.0)  # one 10-token request per 10 ms

    async def burst() -> None:
        await asyncio.gather(*(bucket.acquire() for _ in range(5)))

    started = time.monotonic()
    asyncio.run(burst())  # a command's asyncio.run, then another one: the bucket is not tied to a loop
    asyncio.run(burst())
    threads = [threading.Thread(target=asyncio.run, args=(burst(),)) for _ in range(2)]  # flow tasks in threads
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 20 requests of 10 tokens, the first from the full bucket: at least 19 × 10 ms, whichever loop asked.
    assert time.monotonic() - started >= 0.18


async def test_event_and_settled_merge_with_historical() -> None:
    live = _markets(2)
    old = [{**_markets(1)[0], "ticker": "OLD-1", "settlement_ts": "2026-01-01T00:00:00Z"},
           {**live[0]}]

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/historical/cutoff"):
            return httpx.Response(200, json={"market_settled_ts": "2026-06-01T00:00:00Z"})
        if path.endswith("/historical/markets"):
            return httpx.Response(200, json={"markets": old, "cursor": None})
        if path.endswith("/markets"):
            assert request.url.params["status"] == "settled"
            return httpx.Response(200, json={"markets": live})
        body = sample("event_with_nested_markets_shape.json")
        return httpx.Response(200, content=json.dumps({"event": {**body["event"], "markets": []},
                                                       "markets": body["markets"]}))

    client, _ = _client(handler)
    async with client:
        merged = await client.settled_markets("KXBTCD", 1_700_000_000, 1_800_000_000)
        event = await client.get_event("KXBTCD-26AUG1717")
    assert [m["ticker"] for m in merged] == [live[0]["ticker"], live[1]["ticker"], "OLD-1"]
    assert len(event["markets"]) == 1  # the deprecated top-level array is used when nested is empty


def test_errors_declare_whether_they_are_transient() -> None:
    from kbtc.venues.kalshi.errors import KalshiRateLimitedError, KalshiStreamError

    assert KalshiRateLimitedError("429").transient and KalshiRetriesExhaustedError("x").transient
    assert not KalshiAuthError("401").transient and not KalshiApiError(404, "nf", "gone").transient
    assert not KalshiPayloadError("bad").transient and not KalshiStreamError(17, "internal").transient


async def test_orderbook_trades_and_series_endpoints() -> None:
    trades = [{"trade_id": f"t{i}", "ticker": "M", "count_fp": "1.00", "yes_price_dollars": "0.5000",
               "created_time": "2026-08-17T21:00:00Z"} for i in range(3)]

    def handler(request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, dict(request.url.params)
        if path.endswith("/markets/M/orderbook"):
            assert params == {"depth": "5"}
            return httpx.Response(200, json=sample("rest_orderbook_LEGACY_cents_pre_2026-03.json"))
        if path.endswith("/markets/trades"):
            assert params["ticker"] == "M" and params["min_ts"] == "100"
            start = int(params.get("cursor", 0))
            return httpx.Response(200, json={"trades": trades[start : start + 2],
                                             "cursor": "2" if start == 0 else None})
        assert path.endswith("/series") and params == {"category": "Crypto", "tags": "BTC,ETH"}
        return httpx.Response(200, json={"series": [{"ticker": "KXBTC"}]})

    client, _ = _client(handler)
    async with client:
        book = await client.get_orderbook("M", depth=5)
        got = await client.list_trades(ticker="M", min_ts=100)
        series = await client.list_series(category="Crypto", tags=["BTC", "ETH"])
    assert book["orderbook"]["yes"][-1] == [42, 13]
    assert [t["trade_id"] for t in got] == ["t0", "t1", "t2"] and series == [{"ticker": "KXBTC"}]
