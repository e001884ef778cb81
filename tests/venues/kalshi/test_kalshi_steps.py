"""The Kalshi steps against a fake venue on MockTransport: catalog refresh, demotion, polling, settlements."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fake_venue import FakeKalshi, market
from sqlalchemy import Engine, text

from kbtc.db.engine import make_engine
from kbtc.db.store import read_frame
from kbtc.pipeline.kalshi_catalog import refresh_markets, scan_markets
from kbtc.pipeline.kalshi_store import write_lifecycle
from kbtc.pipeline.poll_quotes import poll_quotes
from kbtc.pipeline.settlements import refresh_settlements
from kbtc.venues.backoff import Backoff
from kbtc.venues.kalshi.errors import KalshiAuthError
from kbtc.venues.kalshi.marketdata import parse_lifecycle
from kbtc.venues.kalshi.ratelimit import TokenBucket
from kbtc.venues.kalshi.rest import KalshiRestClient, RetryPolicy

NOW = 1_787_000_000_000  # 2026-08-17T20:53:20Z, before the sample markets close


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    """A migrated database: SQLite, and PostgreSQL when a server is available."""
    engine = make_engine(migrated_url)
    yield engine
    engine.dispose()


def _client(venue: FakeKalshi) -> KalshiRestClient:
    return KalshiRestClient("http://kalshi.test/trade-api/v2", transport=venue.transport(),
                            bucket=TokenBucket(1e9, 1e9), retry=RetryPolicy(3, Backoff(0.0, 0.0)))


def _venue() -> FakeKalshi:
    venue = FakeKalshi(series={
        "KXBTCD": {"ticker": "KXBTCD", "fee_type": "quadratic", "fee_multiplier": 1, "frequency": "daily"},
        "KXBTC15M": {"ticker": "KXBTC15M", "fee_type": "quadratic", "fee_multiplier": 1},
    })
    venue.markets = [market(f"KXBTCD-26AUG1717-T{70000 + 250 * i}.99", floor_strike=70000 + 250 * i + 0.99)
                     for i in range(5)]
    venue.markets.append(market("KXBTC15M-26AUG171700-00", strike_type="greater_or_equal", floor_strike=None,
                                price_level_structure="tapered_deci_cent", yes_bid_dollars="0.9530",
                                yes_ask_dollars="0.9610", no_bid_dollars="0.0390", no_ask_dollars="0.0470"))
    venue.event_overrides["KXBTC15M-26AUG171700"] = {"fee_type_override": "quadratic_with_maker_fees",
                                                     "fee_multiplier_override": 0.5}
    return venue


def _markets(engine: Engine) -> dict[str, dict[str, object]]:
    frame = read_frame(engine, "SELECT * FROM markets ORDER BY market_ticker")
    return {row["market_ticker"]: row for row in frame.to_dicts()}


async def test_refresh_markets_is_idempotent_and_demotes_without_nulls(engine: Engine) -> None:
    venue = _venue()
    async with _client(venue) as client:
        first = await refresh_markets(engine, client, ["KXBTCD", "KXBTC15M"], status="open", now_ms=NOW)
        assert first.ok and [s.markets for s in first.series] == [5, 1]
        assert first.series[1].skip_reasons == {"missing_bounds": 1}
        rows = _markets(engine)
        again = await refresh_markets(engine, client, ["KXBTCD", "KXBTC15M"], status="open", now_ms=NOW + 1)
        assert again.ok and _markets(engine).keys() == rows.keys()
        fifteen = rows["KXBTC15M-26AUG171700-00"]
        assert (fifteen["fee_type"], fifteen["fee_multiplier"]) == ("quadratic_with_maker_fees", 0.5)
        assert rows["KXBTCD-26AUG1717-T70000.99"]["fee_type"] == "quadratic"
        # One market vanishes, another comes back without its strike: demoted / kept, never nulled.
        gone = venue.markets.pop(0)["ticker"]
        venue.markets[0]["floor_strike"] = None
        third = await refresh_markets(engine, client, ["KXBTCD"], status="open", now_ms=NOW + 2)
    assert third.series[0].demoted == 1
    after = _markets(engine)
    assert after[gone]["catalog_status"] == "vanished" and after[gone]["floor_strike"] == 70000.99
    assert after[gone]["first_seen_ts"] == NOW and after[gone]["close_ts"] == rows[gone]["close_ts"]
    kept = after[venue.markets[0]["ticker"]]
    assert kept["floor_strike"] == 70250.99 and kept["catalog_status"] == "listed"


async def test_failed_series_is_reported_and_left_alone(engine: Engine) -> None:
    venue = _venue()
    async with _client(venue) as client:
        await refresh_markets(engine, client, ["KXBTCD"], status="open", now_ms=NOW)
        venue.fail["/events"] = 503
        summary = await refresh_markets(engine, client, ["KXBTCD"], status="open", now_ms=NOW + 1)
        assert not summary.ok and "503" in (summary.series[0].error or "")
        assert summary.series[0].error_transient  # a retry may succeed: the flow's task retries it
        assert all(r["catalog_status"] == "listed" for r in _markets(engine).values())
        venue.fail = {}
        unknown = await refresh_markets(engine, client, ["KXNOPE", "KXBTCD"], status="open", now_ms=NOW + 2)
        assert "404" in (unknown.series[0].error or "") and unknown.series[1].markets == 5
        assert not unknown.series[0].error_transient and unknown.series[1].error is None
        venue.fail = {"/series": 401}
        with pytest.raises(KalshiAuthError):
            await refresh_markets(engine, client, ["KXBTCD"], now_ms=NOW)


async def test_malformed_market_goes_to_rejects(engine: Engine) -> None:
    venue = _venue()
    venue.markets.append({"event_ticker": "KXBTCD-26AUG1717", "status": "active", "close_time": "soon"})
    async with _client(venue) as client:
        summary = await refresh_markets(engine, client, ["KXBTCD"], status="open", now_ms=NOW)
    assert summary.series[0].rejects == 1 and summary.series[0].markets == 5
    rejects = read_frame(engine, "SELECT source, reason, raw FROM rejects")
    assert rejects["reason"].to_list() == ["ticker: missing"]
    assert json.loads(rejects["raw"][0])["close_time"] == "soon"


async def test_poll_quotes_stores_exact_sub_penny_quotes(engine: Engine) -> None:
    venue = _venue()
    venue.markets[1].update(yes_bid_dollars="0.6000", yes_ask_dollars="0.5000")  # crossed
    async with _client(venue) as client:
        await refresh_markets(engine, client, ["KXBTCD", "KXBTC15M"], status="open", now_ms=NOW)
        summary = await poll_quotes(engine, client, ["KXBTCD", "KXBTC15M"], seconds=0, status="active",
                                    now_ms=NOW)
    assert (summary.markets, summary.polls, summary.quotes, summary.rejects) == (6, 1, 5, 1)
    quotes = read_frame(engine, "SELECT * FROM quotes WHERE market_ticker LIKE 'KXBTC15M%'").to_dicts()
    assert [(q["yes_bid_cents"], q["yes_ask_cents"], q["no_bid_cents"], q["no_ask_cents"]) for q in quotes] == [
        (95.3, 96.1, 3.9, 4.7)]
    assert round(quotes[0]["yes_bid_cents"] * 100) == 9530
    poll_requests = [r for r in venue.requests if "tickers" in r.url.params]
    assert len(poll_requests) == 1  # one batch request for all tracked markets


async def test_refresh_settlements_with_conflicts_and_lifecycle(engine: Engine) -> None:
    venue = _venue()
    async with _client(venue) as client:
        await refresh_markets(engine, client, ["KXBTCD"], status="open", now_ms=NOW)
        settled_at = "2026-08-17T21:06:00Z"
        for m in venue.markets[:2]:
            m.update(status="finalized", result="no", expiration_value="70100.55", settlement_value_dollars="0.0000",
                     settlement_ts=settled_at)
        stored = _markets(engine)
        first_ticker = venue.markets[0]["ticker"]
        with engine.begin() as conn:
            conn.execute(text("UPDATE markets SET result = 'yes' WHERE market_ticker = :t"), {"t": first_ticker})
        determined = parse_lifecycle({"type": "market_lifecycle_v2", "sid": 1, "msg": {
            "market_ticker": venue.markets[4]["ticker"], "event_type": "determined", "result": "yes",
            "determination_ts": 1787000500, "settlement_value": "1.0000"}}, NOW + 10_000)
        write_lifecycle(engine, [determined])
        now = NOW + 3_600_000
        dry = await refresh_settlements(engine, client, ["KXBTCD"], since_seconds=86_400, now_ms=now, dry_run=True)
        assert dry.with_result == 2 and _markets(engine)[venue.markets[1]["ticker"]]["result"] is None
        summary = await refresh_settlements(engine, client, ["KXBTCD"], since_seconds=86_400, now_ms=now)
        again = await refresh_settlements(engine, client, ["KXBTCD"], since_seconds=86_400, now_ms=now)
    assert (summary.fetched, summary.with_result, summary.conflicts, summary.created) == (2, 2, 1, 0)
    assert again.conflicts == 1 and summary.lifecycle_applied == 1
    after = _markets(engine)
    assert after[first_ticker]["result"] == "yes"  # the conflict was not overwritten
    second = after[venue.markets[1]["ticker"]]
    assert (second["result"], second["expiration_value"], second["settlement_value_dollars"]) == ("no", 70100.55, 0.0)
    assert second["catalog_status"] == stored[venue.markets[1]["ticker"]]["catalog_status"]
    fifth = after[venue.markets[4]["ticker"]]
    assert (fifth["result"], fifth["settlement_value_dollars"], fifth["status"]) == ("yes", 1.0, "determined")


async def test_scan_markets_counts_by_status() -> None:
    venue = _venue()
    venue.markets[0]["status"] = "closed"
    async with _client(venue) as client:
        scans = await scan_markets(client, ["KXBTCD", "KXNOPE"])
    assert scans[0].by_status == {"active": 4, "closed": 1} and scans[1].markets == 0


def test_poll_quotes_command_exits_0_when_nothing_is_tracked(
    engine: Engine, migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Between two windows every listed market has closed until the next catalog refresh: a normal state.
    from typer.testing import CliRunner

    from kbtc.cli import app

    async def catalog() -> None:
        async with _client(_venue()) as client:
            assert (await refresh_markets(engine, client, ["KXBTCD", "KXBTC15M"], status="open", now_ms=NOW)).ok

    asyncio.run(catalog())
    with engine.begin() as conn:
        conn.execute(text("UPDATE markets SET close_ts = :past"), {"past": int(time.time() * 1000) - 60_000})
    # No request may be sent: nothing listens on the venue URL.
    for name, value in {"DATABASE_URL": migrated_url, "KALSHI_REST_URL": "http://127.0.0.1:9/trade-api/v2",
                        "KALSHI_SERIES": "KXBTCD,KXBTC15M", "LOG_PATH": str(tmp_path / "app.jsonl")}.items():
        monkeypatch.setenv(name, value)
    done = CliRunner().invoke(app, ["poll-quotes", "--seconds", "0"])
    assert done.exit_code == 0, done.output
    assert "markets=0 polls=0" in done.output and "nothing to poll" in done.output


async def test_poll_quotes_concurrency_bounds_requests_in_flight(engine: Engine) -> None:
    venue = _venue()
    venue.markets = [market(f"KXBTCD-26AUG1717-T{60000 + 10 * i}.99", floor_strike=60000 + 10 * i + 0.99)
                     for i in range(250)]  # three batch requests per poll
    in_flight, peak = 0, []

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight
        in_flight += 1
        peak.append(in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        if "tickers" in request.url.params and "KXBTCD-26AUG1717-T62000.99" in request.url.params["tickers"]:
            return httpx.Response(503, json={"code": "boom", "message": "injected"})
        return venue.handle(request)

    client = KalshiRestClient("http://kalshi.test/trade-api/v2", transport=httpx.MockTransport(handle),
                              bucket=TokenBucket(1e9, 1e9), retry=RetryPolicy(2, Backoff(0.0, 0.0)))
    async with client:
        await refresh_markets(engine, client, ["KXBTCD"], status="open", now_ms=NOW)
        peak.clear()
        serial = await poll_quotes(engine, client, ["KXBTCD"], seconds=0, concurrency=1, now_ms=NOW)
        assert max(peak) == 1
        peak.clear()
        parallel = await poll_quotes(engine, client, ["KXBTCD"], seconds=0, concurrency=5, now_ms=NOW)
        assert max(peak) == 3
    # The chunk holding T62000.99 (tickers 200-249) fails after its retries; the other two are stored.
    for summary in (serial, parallel):
        assert (summary.markets, summary.polls, summary.quotes, summary.failures) == (250, 1, 200, 1)


async def test_refresh_settlements_limit_splits_over_series_and_debug_logs_each_market(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    venue = _venue()
    for m in venue.markets:
        m.update(status="finalized", result="no", expiration_value="70100.55", settlement_value_dollars="0.0000",
                 settlement_ts="2026-08-17T21:06:00Z")
    now = NOW + 3_600_000
    async with _client(venue) as client:
        capped = await refresh_settlements(engine, client, ["KXBTCD"], since_seconds=86_400, now_ms=now, limit=2,
                                           dry_run=True)
        settled_pages = [r for r in venue.requests if r.url.params.get("status") == "settled"]
        assert capped.fetched == 2 and len(settled_pages) == 1 and settled_pages[0].url.params["limit"] == "2"
        split = await refresh_settlements(engine, client, ["KXBTCD", "KXBTC15M"], since_seconds=86_400,
                                          now_ms=now, limit=3, dry_run=True)
        assert split.fetched == 2  # 3 // 2 = 1 per series
        with caplog.at_level(logging.DEBUG, logger="kbtc.pipeline.settlements"):
            everything = await refresh_settlements(engine, client, ["KXBTCD", "KXBTC15M"], since_seconds=86_400,
                                                   now_ms=now)
    assert everything.fetched == 6 and everything.created == 6
    logged = [r for r in caplog.records if r.getMessage() == "kalshi_settlement_market"]
    assert {r.fields["market"] for r in logged} == {m["ticker"] for m in venue.markets}  # type: ignore[attr-defined]
    assert {r.fields["outcome"] for r in logged} == {"created"}  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="limit"):
        await refresh_settlements(engine, client, ["KXBTCD"], limit=-1)
