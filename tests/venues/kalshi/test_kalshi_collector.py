"""collect_kalshi end to end against the in-test WebSocket server: rows, tape, feed events, no duplicates."""

from __future__ import annotations

import json
from pathlib import Path

from fake_ws import FakeKalshiWs
from kalshi_samples import sample
from sqlalchemy import Engine
from websockets.asyncio.server import ServerConnection

from kbtc.config import load_settings
from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import read_frame
from kbtc.pipeline.kalshi_collector import collect_kalshi
from kbtc.pipeline.tape import read_tape, tape_files
from kbtc.venues.backoff import Backoff
from kbtc.venues.kalshi.ws import StreamSettings


def _engine(url: str) -> Engine:
    upgrade_database(url)
    return make_engine(url)


async def test_collect_survives_an_abrupt_drop_without_duplicates(sqlite_url: str, tmp_path: Path) -> None:
    ticker = {**sample("ws_ticker.json"), "msg": {**sample("ws_ticker.json")["msg"], "market_ticker": "A",
                                                  "yes_bid_dollars": "0.9530", "yes_ask_dollars": "0.9610"}}
    trade = {**sample("ws_trade.json"), "msg": {**sample("ws_trade.json")["msg"], "market_ticker": "A"}}
    determined = {"type": "market_lifecycle_v2", "sid": 4, "msg": {
        "market_ticker": "A", "event_type": "determined", "result": "yes", "determination_ts": 1669149900,
        "settlement_value": "1.0000"}}

    async def on_subscribed(ws: ServerConnection, channel: str, tickers: list[str]) -> None:
        if channel == "orderbook_delta" and len(server.connections) == 2:
            for price, delta in (("0.4200", "3.00"), ("0.4300", "2.00"), ("0.4100", "-5.00")):
                await ws.send(server.delta_frame("A", "yes", price, delta))
        if channel != "market_lifecycle_v2":
            return
        # Both sessions deliver the same ticker and trade (as a resent initial state would): stored once.
        await ws.send(json.dumps(ticker))
        await ws.send(json.dumps(trade))
        if len(server.connections) == 1:
            ws.transport.abort()
        else:
            await ws.send(json.dumps(determined))
            other = {**determined, "msg": {**determined["msg"], "market_ticker": "INXD-23SEP14-B4487"}}
            await ws.send(json.dumps(other))  # another series: tape only

    engine = _engine(sqlite_url)
    async with FakeKalshiWs() as server:
        server.on_subscribed = on_subscribed
        settings = load_settings(KALSHI_WS_URL=server.url, data_dir=tmp_path)
        summary = await collect_kalshi(
            settings, engine, 1.5, markets=["A"],
            stream_settings=StreamSettings(backoff=Backoff(0.01, 0.05)), tape_root=tmp_path / "tape",
        )
    assert summary.connects == 2 and summary.quotes == 2 and summary.trades == 2
    quotes = read_frame(engine, "SELECT * FROM quotes").to_dicts()
    assert len(quotes) == 1 and (quotes[0]["yes_bid_cents"], quotes[0]["no_bid_cents"]) == (95.3, 3.9)
    assert read_frame(engine, "SELECT count(*) AS n FROM kalshi_trades")["n"][0] == 1
    books = read_frame(engine, "SELECT * FROM orderbook_snapshots ORDER BY id").to_dicts()
    assert books[0]["best_yes_bid_cents"] == 41.0
    # Deltas inside the throttle interval are not stored one by one, but the session's last state is.
    assert json.loads(books[-1]["yes_bids_json"]) == [[43.0, 2.0], [42.0, 3.0], [40.0, 10.0]]
    kinds = read_frame(engine, "SELECT kind FROM feed_events ORDER BY id")["kind"].to_list()
    assert kinds[:4] == ["connect", "disconnect", "connect", "resubscribe"]
    market = read_frame(engine, "SELECT result, settlement_value_dollars, status FROM markets").to_dicts()
    assert read_frame(engine, "SELECT market_ticker FROM market_lifecycle_events")["market_ticker"].to_list() == ["A"]
    assert market == [{"result": "yes", "settlement_value_dollars": 1.0, "status": "determined"}]
    frames = list(read_tape(tape_files(tmp_path / "tape", "kalshi")))
    assert len(frames) == summary.frames and frames[0].feed == "kalshi"
    assert sum(json.loads(f.raw).get("type") == "ticker" for f in frames) == 2
