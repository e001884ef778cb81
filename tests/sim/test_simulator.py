"""The whole simulator: Kalshi and Coinbase from one price path, the environment that points kbtc at it."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.asyncio.client import connect

from kbtc.config import Settings
from kbtc.sim.markets import CatalogConfig
from kbtc.sim.simulator import SimConfig, Simulator


@pytest.mark.slow
async def test_one_simulator_serves_both_venues_from_one_path(monkeypatch: pytest.MonkeyPatch) -> None:
    config = SimConfig(seed=5, catalog=CatalogConfig(window_minutes=2, event_minutes=10, history_s=1800),
                       rate_limit_per_s=None, tick_interval_s=0.05)
    async with Simulator(config) as sim:
        env = sim.env()
        assert set(env) == {"KALSHI_REST_URL", "KALSHI_WS_URL", "COINBASE_WS_URL", "COINBASE_REST_URL",
                            "COINBASE_EXCHANGE_WS_URL", "COINBASE_EXCHANGE_REST_URL"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = Settings()
        assert settings.kalshi_rest_url == sim.kalshi_rest_url and settings.kalshi_ws_url == sim.kalshi_ws_url
        assert settings.coinbase_ws_url == env["COINBASE_WS_URL"]
        assert sim.coinbase is not None
        assert settings.coinbase_exchange_ws_url == sim.coinbase.exchange_ws_url
        assert settings.coinbase_exchange_rest_url == sim.coinbase.rest_url

        async with connect(env["COINBASE_WS_URL"]) as coinbase, \
                httpx.AsyncClient(base_url=sim.control_url) as control:
            await coinbase.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "ticker"}))
            ticker = None
            while ticker is None:
                # The index just before and just after the frame is read: on a loaded machine the price moves
                # between reading a ticker and asking for the state.
                before = (await control.get("/state")).json()["index_usd"]
                frame = json.loads(await coinbase.recv())
                if frame.get("channel") == "ticker":
                    ticker = frame["events"][0]["tickers"][0]
            after = (await control.get("/state")).json()["index_usd"]
        # The Coinbase price is the Kalshi settlement index plus a few dollars of basis and noise.
        assert min(abs(float(ticker["price"]) - index) for index in (before, after)) < 60
        async with httpx.AsyncClient(base_url=env["KALSHI_REST_URL"]) as rest:
            open_15m = (await rest.get("/markets", params={"series_ticker": "KXBTC15M", "status": "open"})).json()
        assert len(open_15m["markets"]) == 1
