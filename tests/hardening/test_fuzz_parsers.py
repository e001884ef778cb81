"""Property tests: every parser turns any input into a result or a rejection with a reason, never a crash.

"Rejected with a reason" is the parser's documented error type carrying a non-empty message (Kalshi
`FieldError`/`KalshiError`, Coinbase `FrameError` → `RejectRecord`, candles `ValueError(reason)`, imports
`ImportFormatError` or per-line errors). Any other exception is an uncaught crash and fails the test.
`KBTC_FUZZ_EXAMPLES` sets the number of examples per property (CI default 150).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fuzz_support import (
    COINBASE_SAMPLES,
    KALSHI_SAMPLES,
    as_wire,
    garbage_text,
    json_values,
    load,
    mutated,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kbtc.db.migrate import upgrade_database
from kbtc.pipeline.imports import ImportFormatError, import_csv
from kbtc.venues.coinbase.messages import FrameKind
from kbtc.venues.coinbase.parsing import parse_advanced_frame, parse_exchange_frame
from kbtc.venues.coinbase.rest import CandlesClient, CoinbaseRestError, parse_candles
from kbtc.venues.kalshi.catalog import parse_event, parse_market, parse_markets, parse_series
from kbtc.venues.kalshi.errors import KalshiError, KalshiFatalError
from kbtc.venues.kalshi.marketdata import (
    parse_index_value,
    parse_lifecycle,
    parse_trade,
    quote_from_market,
    quote_from_ticker,
)
from kbtc.venues.kalshi.orderbook import OrderBook, parse_book_sides
from kbtc.venues.kalshi.parsing import FieldError
from kbtc.venues.kalshi.rest import KalshiRestClient, RetryPolicy
from kbtc.venues.kalshi.ws import KalshiStream
from kbtc.venues.records import FeedEventRecord, RejectRecord

EXAMPLES = int(os.environ.get("KBTC_FUZZ_EXAMPLES", "150"))
# Hypothesis flags any change of the global `random` state while it draws. Threads other tests leave behind
# in this session (Prefect's harness services, simulator threads with jittered timers) draw from it
# concurrently, which is no property of the strategies here.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW_MS = 1_790_000_000_000

_event = load(KALSHI_SAMPLES, "event_with_nested_markets_shape.json")["event"]
MARKET = _event["markets"][0]
EVENT = {k: v for k, v in _event.items() if k != "markets"}
SERIES = {"ticker": "KXBTCD", "title": "Bitcoin", "category": "Crypto", "frequency": "hourly",
          "fee_type": "quadratic", "fee_multiplier": 1, "settlement_sources": [{"name": "CF Benchmarks"}]}
WS_FRAMES = [load(KALSHI_SAMPLES, name) for name in (
    "ws_ticker.json", "ws_trade.json", "ws_orderbook_snapshot.json", "ws_orderbook_delta.json",
    "ws_market_lifecycle_v2_created.json", "ws_cfbenchmarks_value.json", "ws_event_lifecycle.json",
    "ws_event_fee_update.json",
)] + [frame for frame in load(KALSHI_SAMPLES, "ws_commands_and_control_messages.json").values() if "type" in frame]
BOOKS = [load(KALSHI_SAMPLES, "rest_orderbook_current_orderbook_fp.json"),
         load(KALSHI_SAMPLES, "rest_orderbook_LEGACY_cents_pre_2026-03.json")]
ADVANCED_FRAMES = [load(COINBASE_SAMPLES, name) for name in (
    "advanced_trade_ws_ticker.json", "advanced_trade_ws_heartbeats.json", "advanced_trade_ws_heartbeats_int_counter.json",
    "advanced_trade_ws_market_trades.json", "advanced_trade_ws_subscriptions_ack.json", "advanced_trade_ws_error.json",
)]
EXCHANGE_FRAMES = [load(COINBASE_SAMPLES, name) for name in ("exchange_ws_ticker.json", "exchange_ws_error.json")] + [
    {"type": "heartbeat", "sequence": 90, "product_id": "BTC-USD", "last_trade_id": 20, "time": "2014-11-07T08:19:28Z"},
    {"type": "subscriptions", "channels": [{"name": "ticker", "product_ids": ["BTC-USD"]}]},
]


def _reasoned(exc: BaseException) -> None:
    assert str(exc).strip(), f"{type(exc).__name__} without a reason"


def _record_or_reason(parse: Any, payload: Any) -> None:
    try:
        parse(payload, NOW_MS)
    except FieldError as exc:
        _reasoned(exc)


# -- Kalshi REST objects -----------------------------------------------------------------------------------


@FUZZ
@given(st.one_of(mutated(MARKET), json_values))
def test_kalshi_market_parsed_or_rejected(payload: Any) -> None:
    if isinstance(payload, dict):
        _record_or_reason(parse_market, payload)
        _record_or_reason(quote_from_market, payload)
    records, rejects = parse_markets([payload], NOW_MS)
    assert len(records) + len(rejects) == 1
    assert all(r.reason and r.raw for r in rejects)


@FUZZ
@given(mutated(EVENT), mutated(SERIES))
def test_kalshi_event_and_series_parsed_or_rejected(event: dict[str, Any], series: dict[str, Any]) -> None:
    _record_or_reason(parse_event, event)
    _record_or_reason(parse_series, series)


@FUZZ
@given(st.one_of(st.sampled_from(BOOKS).flatmap(mutated), json_values))
def test_kalshi_orderbook_parsed_or_rejected(payload: Any) -> None:
    if not isinstance(payload, dict):
        return
    try:
        parse_book_sides(payload)
        OrderBook("M").apply_snapshot(payload)
    except FieldError as exc:
        _reasoned(exc)


@FUZZ
@given(st.sampled_from([m for f in WS_FRAMES if isinstance(m := f.get("msg"), dict)]).flatmap(mutated))
def test_kalshi_ws_messages_parsed_or_rejected(msg: dict[str, Any]) -> None:
    _record_or_reason(quote_from_ticker, msg)
    try:
        parse_trade(msg, NOW_MS, "ws")
    except FieldError as exc:
        _reasoned(exc)
    _record_or_reason(parse_lifecycle, {"type": "market_lifecycle_v2", "msg": msg})
    _record_or_reason(parse_index_value, {"type": "cfbenchmarks_value", "msg": msg})


# -- Kalshi WebSocket frames (the stream's whole frame handler) --------------------------------------------


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(WS_FRAMES).flatmap(mutated).map(as_wire), garbage_text), max_size=6))
def test_kalshi_stream_frames_parsed_or_rejected(frames: list[str]) -> None:
    stream = KalshiStream("ws://127.0.0.1:9/trade-api/ws/v2", ["FED-23DEC-T3.00", "HIGHNY-22DEC23-B53.5"])
    for text in frames:
        try:
            items = stream.handle_frame(text, NOW_MS)
        except KalshiFatalError as exc:  # error replies meaning our command is wrong: stop, say why
            _reasoned(exc)
            continue
        for item in items:
            if isinstance(item, RejectRecord):
                assert item.reason and item.raw == text
            elif isinstance(item, FeedEventRecord):
                assert item.feed == "kalshi"


# -- Kalshi REST client (bodies of every status) -----------------------------------------------------------


@FUZZ
@given(st.integers(200, 599), st.one_of(garbage_text, json_values.map(as_wire),
                                        st.sampled_from([MARKET, EVENT]).flatmap(mutated).map(
                                            lambda m: as_wire({"markets": [m], "cursor": m.get("ticker")}))))
def test_kalshi_rest_bodies_returned_or_raised_as_kalshi_errors(status: int, body: str) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, text=body))

    async def no_sleep(_: float) -> None:
        return None

    async def call() -> None:
        async with KalshiRestClient("http://kalshi.test/trade-api/v2", transport=transport,
                                    retry=RetryPolicy(max_attempts=2), sleep=no_sleep) as client:
            try:
                await client.list_markets(limit=5)
                await client.get_market("M")
                await client.get_event("E")
                await client.get_orderbooks(["M"])
                await client.settled_markets("KXBTCD", 0, 10)
            except KalshiError as exc:
                _reasoned(exc)

    asyncio.run(call())


# -- Coinbase WebSocket ------------------------------------------------------------------------------------


@FUZZ
@given(st.one_of(st.sampled_from(ADVANCED_FRAMES).flatmap(mutated).map(as_wire), garbage_text))
def test_coinbase_advanced_frames_parsed_or_rejected(text: str) -> None:
    for product in ("BTC-USD", None):
        parsed = parse_advanced_frame(text, NOW_MS, product)
        assert parsed.kind in FrameKind
        assert all(r.reason and r.raw == text for r in parsed.rejects)
        if parsed.kind is FrameKind.REJECTED:
            assert parsed.rejects
        for tick in parsed.ticks:
            assert tick.price > 0 and (tick.best_bid is None or tick.best_ask is None or tick.best_bid <= tick.best_ask)


@FUZZ
@given(st.one_of(st.sampled_from(EXCHANGE_FRAMES).flatmap(mutated).map(as_wire), garbage_text))
def test_coinbase_exchange_frames_parsed_or_rejected(text: str) -> None:
    parsed = parse_exchange_frame(text, NOW_MS, "BTC-USD")
    assert all(r.reason and r.raw == text for r in parsed.rejects)
    if parsed.kind is FrameKind.REJECTED:
        assert parsed.rejects
    assert all(tick.price > 0 for tick in parsed.ticks)


# -- Coinbase REST candles ---------------------------------------------------------------------------------

_EXCHANGE_CANDLES = load(COINBASE_SAMPLES, "exchange_rest_candles.json")
_ADVANCED_CANDLES = load(COINBASE_SAMPLES, "advanced_trade_rest_public_candles.json")


@FUZZ
@given(mutated(_EXCHANGE_CANDLES), mutated(_ADVANCED_CANDLES))
def test_coinbase_candles_parsed_or_rejected(exchange_body: Any, advanced_body: Any) -> None:
    for source, body in (("exchange", exchange_body), ("advanced", advanced_body)):
        try:
            page = parse_candles(source, body, NOW_MS)  # type: ignore[arg-type]
        except CoinbaseRestError as exc:
            _reasoned(exc)
            continue
        assert all(r.reason for r in page.rejects)
        assert all(c.low <= c.open <= c.high and c.low > 0 for c in page.candles)


@FUZZ
@given(st.integers(200, 599), st.one_of(garbage_text, mutated(_ADVANCED_CANDLES).map(as_wire)))
def test_coinbase_candles_client_returns_or_raises_rest_errors(status: int, body: str) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, text=body))
    with CandlesClient("advanced", "http://coinbase.test", transport=transport, max_attempts=2,
                       sleep=lambda _: None) as client:
        try:
            client.fetch("BTC-USD", 1_639_508_040, 1_639_508_100, 60)
        except CoinbaseRestError as exc:
            _reasoned(exc)


# -- CSV imports -------------------------------------------------------------------------------------------

_IMPORT_COLUMNS = {
    "markets": ["ticker", "close_time", "strike_type", "floor_strike", "cap_strike", "result", "open_time"],
    "quotes": ["ts", "ticker", "yes_bid", "yes_ask", "no_bid", "no_ask"],
    "spot": ["ts", "price", "product_id"],
    "candles": ["ts", "open", "high", "low", "close", "volume"],
}
_cells = st.one_of(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=10),
                   st.sampled_from(["", "0", "0.5", "42.5", "-1", "1e400", "nan", "2026-11-25T17:00:00Z",
                                    "1790000000", "1790000000000", "1790000000000000000", "greater", "between",
                                    "yes", "no", '"', '","', "\n"]))


@pytest.fixture(scope="module")
def import_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'imports.sqlite'}"
    upgrade_database(url)
    return url


@FUZZ
@given(kind=st.sampled_from(sorted(_IMPORT_COLUMNS)), data=st.data())
def test_csv_imports_written_or_rejected(import_db: str, kind: str, data: st.DataObject) -> None:
    from kbtc.db.engine import make_engine

    columns = data.draw(st.lists(st.sampled_from(_IMPORT_COLUMNS[kind]), min_size=1, unique=True)
                        | st.just(_IMPORT_COLUMNS[kind]))
    rows = data.draw(st.lists(st.lists(_cells, min_size=len(columns), max_size=len(columns) + 1), max_size=5))
    text = "\n".join([",".join(columns), *(",".join(json.dumps(c) if "," in c else c for c in r) for r in rows)])
    path = Path(f"fuzz-{kind}.csv")
    path.write_text(text, encoding="utf-8")
    engine = make_engine(import_db)
    try:
        result = import_csv(engine, kind, path, now_ts=NOW_MS)  # type: ignore[arg-type]
    except ImportFormatError as exc:
        _reasoned(exc)
        return
    finally:
        engine.dispose()
    assert result.rows_written <= result.rows_read
    assert all(line >= 2 and reason for line, reason in result.errors)
