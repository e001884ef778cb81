"""The simulated Kalshi REST API: documented shapes, filters, paging, errors, historical partition."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sim_support import START_MS, fast_config, sample

from kbtc.sim.markets import CatalogConfig
from kbtc.sim.simulator import ManualClock, Simulator

DOLLARS = re.compile(r"^\d\.\d{4}$")
FP = re.compile(r"^\d+\.\d{2}$")


def epoch_ms(iso_time: str) -> int:
    return round(datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp() * 1000)


async def get(sim: Simulator, path: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sim.kalshi_rest_url) as client:
        return await client.get(path, params=params)


async def all_pages(sim: Simulator, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = ""
    while True:
        response = await get(sim, path, **params, cursor=cursor)
        assert response.status_code == 200, response.text
        body = response.json()
        rows.extend(body[key])
        cursor = body["cursor"]
        if not cursor:
            return rows


async def test_market_shape_matches_the_documented_sample(sim: Simulator) -> None:
    documented = sample("event_with_nested_markets_shape.json")["event"]["markets"][0]
    body = (await get(sim, "/markets", series_ticker="KXBTCD", status="open", limit=1)).json()
    market = body["markets"][0]
    assert set(documented) <= set(market)
    for name, value in documented.items():
        assert type(market[name]) is type(value), name
        if name.endswith("_dollars"):
            assert DOLLARS.match(market[name]), (name, market[name])
        if name.endswith("_fp"):
            assert FP.match(market[name]), (name, market[name])
    # Today's shape: no integer-cent twins (removed 2026-03-12).
    assert not {"yes_bid", "yes_ask", "last_price", "volume"} & set(market)
    assert market["strike_type"] == "greater" and market["price_level_structure"] == "linear_cent"


async def test_event_shape_and_nesting(sim: Simulator) -> None:
    documented = sample("event_with_nested_markets_shape.json")
    events = (await get(sim, "/events", series_ticker="KXBTC", status="open", with_nested_markets="true")).json()
    event = events["events"][0]
    assert set(documented["event"]) <= set(event)
    assert len(event["markets"]) == 12
    single = (await get(sim, f"/events/{event['event_ticker']}")).json()
    assert set(single) == {"event", "markets"} and "markets" not in single["event"]
    assert [m["ticker"] for m in single["markets"]] == [m["ticker"] for m in event["markets"]]


async def test_series_carries_fees(sim: Simulator) -> None:
    series = (await get(sim, "/series/KXBTC15M")).json()["series"]
    assert (series["fee_type"], series["fee_multiplier"], series["frequency"]) == ("quadratic", 1.0, "fifteen_min")
    missing = await get(sim, "/series/KXNOPE")
    assert missing.status_code == 404
    assert set(missing.json()) == {"code", "message", "details"}


async def test_markets_cursor_paging_returns_every_market_once(sim: Simulator) -> None:
    one_page = (await get(sim, "/markets", limit=1000)).json()
    assert one_page["cursor"] == ""
    paged = await all_pages(sim, "/markets", "markets", limit=7)
    assert [m["ticker"] for m in paged] == [m["ticker"] for m in one_page["markets"]]
    assert len({m["ticker"] for m in paged}) == len(paged) > 50
    default = (await get(sim, "/markets")).json()
    assert len(default["markets"]) == 100 and default["cursor"]
    assert (await get(sim, "/markets", limit=1001)).status_code == 400
    assert (await get(sim, "/markets", cursor="!!notacursor")).status_code == 400


async def test_status_filters_map_to_response_statuses(sim: Simulator, clock: ManualClock) -> None:
    clock.now_ms = START_MS + 42_000  # two seconds after a 2-minute window closed: it is "closed"
    market = (await get(sim, "/markets", series_ticker="KXBTCD", status="open")).json()["markets"][0]
    async with httpx.AsyncClient(base_url=sim.control_url) as control:
        assert (await control.post(f"/markets/{market['ticker']}/pause")).json()["status"] == "inactive"
    expected = {"unopened": {"initialized"}, "open": {"active"}, "paused": {"inactive"},
                "closed": {"closed", "determined"}, "settled": {"finalized"}}
    for word, statuses in expected.items():
        rows = await all_pages(sim, "/markets", "markets", status=word, limit=1000)
        assert rows, word
        assert {m["status"] for m in rows} <= statuses, word
    assert (await get(sim, "/markets", status="active")).status_code == 400
    # Timestamp families allow only some statuses (reference/kalshi_api.md §3).
    assert (await get(sim, "/markets", status="open", min_close_ts=1)).status_code == 400
    assert (await get(sim, "/markets", min_close_ts=1, min_created_ts=1)).status_code == 400


async def test_filters_by_event_series_tickers_and_close_time(sim: Simulator) -> None:
    ladder = (await get(sim, "/markets", series_ticker="KXBTCD", status="open", limit=1000)).json()["markets"]
    event_ticker = ladder[0]["event_ticker"]
    by_event = (await get(sim, "/markets", event_ticker=event_ticker, limit=1000)).json()["markets"]
    assert {m["event_ticker"] for m in by_event} == {event_ticker} and len(by_event) == 20
    picked = [ladder[0]["ticker"], ladder[5]["ticker"]]
    by_ticker = (await get(sim, "/markets", tickers=",".join(picked))).json()["markets"]
    assert sorted(m["ticker"] for m in by_ticker) == sorted(picked)
    window = (START_MS // 1000, START_MS // 1000 + 600)
    closing = await all_pages(sim, "/markets", "markets", min_close_ts=window[0], max_close_ts=window[1])
    assert closing
    for m in closing:
        assert window[0] * 1000 <= epoch_ms(m["close_time"]) <= window[1] * 1000


async def test_settled_markets_carry_results_and_the_strike_is_published_after_open(
    sim: Simulator, clock: ManualClock
) -> None:
    settled = (await get(sim, "/markets", series_ticker="KXBTC15M", status="settled", limit=1000)).json()["markets"]
    for market in settled:
        assert market["status"] == "finalized" and market["result"] in ("yes", "no")
        value, strike = float(market["expiration_value"]), market["floor_strike"]
        assert market["result"] == ("yes" if value >= strike else "no")
        assert market["settlement_value_dollars"] == ("1.0000" if market["result"] == "yes" else "0.0000")
    upcoming = (await get(sim, "/markets", series_ticker="KXBTC15M", status="unopened")).json()["markets"][0]
    assert "floor_strike" not in upcoming and upcoming["yes_sub_title"] == "Target price: TBD"
    clock.now_ms = epoch_ms(upcoming["open_time"]) + 1000  # one second after it opened
    opened = (await get(sim, f"/markets/{upcoming['ticker']}")).json()["market"]
    assert opened["status"] == "active" and "floor_strike" not in opened
    clock.advance(10)
    opened = (await get(sim, f"/markets/{upcoming['ticker']}")).json()["market"]
    assert opened["yes_sub_title"].startswith("Target Price: $") and opened["floor_strike"] > 0
    # The target price is the previous window's expiration value (both: the 60 prints before this open).
    clock.advance(120)
    previous = (await get(sim, "/markets", series_ticker="KXBTC15M", max_close_ts=epoch_ms(opened["open_time"]) // 1000,
                          min_close_ts=epoch_ms(opened["open_time"]) // 1000)).json()["markets"][0]
    assert float(previous["expiration_value"]) == opened["floor_strike"]


async def test_orderbook_shapes(sim: Simulator) -> None:
    documented = sample("rest_orderbook_current_orderbook_fp.json")
    market = (await get(sim, "/markets", series_ticker="KXBTC15M", status="open")).json()["markets"][0]
    book = (await get(sim, f"/markets/{market['ticker']}/orderbook")).json()
    assert set(book) == set(documented) and set(book["orderbook_fp"]) == set(documented["orderbook_fp"])
    for side in ("yes_dollars", "no_dollars"):
        levels = book["orderbook_fp"][side]
        prices = [float(p) for p, _ in levels]
        assert prices == sorted(prices)  # ascending: the best bid is last
        assert all(DOLLARS.match(p) and FP.match(c) for p, c in levels)
    best_no = book["orderbook_fp"]["no_dollars"][-1][0]
    assert f"{1 - float(best_no):.4f}" == market["yes_ask_dollars"]
    top = (await get(sim, f"/markets/{market['ticker']}/orderbook", depth=1)).json()["orderbook_fp"]
    assert len(top["yes_dollars"]) == 1
    many = (await get(sim, "/markets/orderbooks", tickers=f"{market['ticker']},NOPE-1")).json()
    assert [b["ticker"] for b in many["orderbooks"]] == [market["ticker"]]


async def test_trades_newest_first_with_paging_and_time_filter(sim: Simulator) -> None:
    trades = await all_pages(sim, "/markets/trades", "trades", limit=50, min_ts=START_MS // 1000 - 120)
    assert len(trades) > 50
    times = [t["created_time"] for t in trades]
    assert times == sorted(times, reverse=True)
    assert len({t["trade_id"] for t in trades}) == len(trades)
    documented = sample("ws_trade.json")["msg"]
    assert {"trade_id", "count_fp", "yes_price_dollars", "no_price_dollars", "taker_side"} <= set(trades[0])
    assert set(trades[0]) >= set(documented) - {"market_ticker", "ts", "ts_ms"}
    assert not {"yes_price", "no_price", "count"} & set(trades[0])  # today's shape: no integer twins
    one = (await get(sim, "/markets/trades", ticker=trades[0]["ticker"], limit=1000)).json()["trades"]
    assert {t["ticker"] for t in one} == {trades[0]["ticker"]}


async def test_historical_partition(sim: Simulator) -> None:
    cutoff = (await get(sim, "/historical/cutoff")).json()
    assert set(cutoff) == {"market_settled_ts", "trades_created_ts", "orders_updated_ts",
                           "market_positions_last_updated_ts"}
    live = {m["ticker"] for m in await all_pages(sim, "/markets", "markets", limit=1000)}
    old = await all_pages(sim, "/historical/markets", "markets", limit=25)
    assert old and not live & {m["ticker"] for m in old}
    assert all(m["status"] == "finalized" for m in old)
    assert (await get(sim, f"/markets/{old[0]['ticker']}")).status_code == 404
    assert (await get(sim, f"/historical/markets/{old[0]['ticker']}")).status_code == 200
    assert (await get(sim, "/historical/markets", series_ticker="KXBTC", event_ticker="X")).status_code == 400


async def test_legacy_cent_fields_switch(clock: ManualClock) -> None:
    async with Simulator(fast_config(legacy_cents=True), clock=clock) as sim:
        market = (await get(sim, "/markets", series_ticker="KXBTCD", status="open")).json()["markets"][0]
        assert market["yes_bid"] == round(float(market["yes_bid_dollars"]) * 100)
        assert isinstance(market["volume"], int)
        book = (await get(sim, f"/markets/{market['ticker']}/orderbook")).json()
        legacy = sample("rest_orderbook_LEGACY_cents_pre_2026-03.json")
        assert set(book["orderbook"]) == set(legacy["orderbook"])
        assert all(isinstance(p, int) for p, _ in book["orderbook"]["yes"])
        trades = (await get(sim, "/markets/trades", limit=100)).json()["trades"]
        assert trades
        for trade in trades:
            assert trade["yes_price"] == round(Decimal(trade["yes_price_dollars"]) * 100)
            assert trade["no_price"] == round(Decimal(trade["no_price_dollars"]) * 100)
            assert trade["count"] == int(float(trade["count_fp"]))
            assert all(isinstance(trade[name], int) for name in ("yes_price", "no_price", "count"))


async def test_same_seed_same_answers(clock: ManualClock) -> None:
    async def snapshot() -> list[Any]:
        async with Simulator(fast_config(), clock=clock) as sim:
            markets = (await get(sim, "/markets", limit=1000)).json()["markets"]
            trades = (await get(sim, "/markets/trades", limit=200)).json()["trades"]
            return [markets, trades]

    assert await snapshot() == await snapshot()


@pytest.mark.parametrize("limit", [1, 3])
async def test_events_paging(sim: Simulator, limit: int) -> None:
    events = await all_pages(sim, "/events", "events", limit=limit, series_ticker="KXBTCD")
    tickers = [e["event_ticker"] for e in events]
    assert len(tickers) == len(set(tickers)) >= 6
    assert (await get(sim, "/events", limit=201)).status_code == 400


async def test_rate_limit_answers_429_without_retry_after(clock: ManualClock) -> None:
    async with Simulator(fast_config(rate_limit_per_s=2.0), clock=clock) as sim:
        statuses = [(await get(sim, "/exchange/status")) for _ in range(8)]
        limited = [r for r in statuses if r.status_code == 429]
        assert limited and statuses[0].status_code == 200
        assert limited[0].json() == {"error": "too many requests"}
        assert "retry-after" not in limited[0].headers


def test_catalog_config_defaults_are_the_real_series() -> None:
    assert CatalogConfig().window_minutes == 15 and CatalogConfig().event_minutes == 60


async def test_a_paused_market_freezes_its_book_and_prints_no_trades(sim: Simulator, clock: ManualClock) -> None:
    ladder = (await get(sim, "/markets", series_ticker="KXBTCD", status="open")).json()["markets"]
    ticker = min(ladder, key=lambda m: abs(float(m["yes_bid_dollars"]) - 0.5))["ticker"]  # the most contested
    async with httpx.AsyncClient(base_url=sim.control_url) as control:
        assert (await control.post(f"/markets/{ticker}/pause")).json()["status"] == "inactive"
        paused_at = clock()
        before = (await get(sim, f"/markets/{ticker}")).json()["market"]
        book = (await get(sim, f"/markets/{ticker}/orderbook")).json()
        clock.advance(60)
        during = (await get(sim, f"/markets/{ticker}")).json()["market"]
        assert during["status"] == "inactive" and during["volume_fp"] == before["volume_fp"]
        assert (await get(sim, f"/markets/{ticker}/orderbook")).json() == book
        trades = (await get(sim, "/markets/trades", ticker=ticker, min_ts=paused_at // 1000 + 1)).json()["trades"]
        assert trades == []
        assert (await control.post(f"/markets/{ticker}/resume")).json()["status"] == "active"
        clock.advance(60)
        after = (await get(sim, f"/markets/{ticker}")).json()["market"]
        assert float(after["volume_fp"]) > float(during["volume_fp"])
        assert (await control.post("/markets/NOPE-1/pause")).status_code == 404


async def test_ladder_and_range_results_follow_the_published_expiration_value(sim: Simulator) -> None:
    settled = await all_pages(sim, "/markets", "markets", status="settled", limit=1000)
    checked = 0
    for market in settled:
        if market["event_ticker"].startswith("KXBTC15M"):
            continue
        value = float(market["expiration_value"])
        floor, cap = market.get("floor_strike"), market.get("cap_strike")
        expected = {"greater": floor is not None and value > floor, "less": cap is not None and value < cap,
                    "between": floor is not None and cap is not None and floor <= value <= cap}[market["strike_type"]]
        assert market["result"] == ("yes" if expected else "no"), market["ticker"]
        checked += 1
    assert checked > 20
    by_event: dict[str, list[str]] = {}
    for market in settled:
        if market["event_ticker"].startswith("KXBTC-"):
            by_event.setdefault(market["event_ticker"], []).append(market["result"])
    assert by_event and all(results.count("yes") == 1 for results in by_event.values())
