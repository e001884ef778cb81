"""`kbtc sim`: prints the URLs and environment, accepts faults, rejects bad ones with one line."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from kbtc.cli import app
from kbtc.commands.sim import FaultSpec, parse_fault
from kbtc.sim.faults import FaultPlan
from kbtc.sim.simulator import Simulator


def test_parse_fault() -> None:
    assert parse_fault("kalshi_ws:stall:2:7.5") == FaultSpec("kalshi_ws", "stall", 2, 7.5)
    assert parse_fault("kalshi_rest:http_429") == FaultSpec("kalshi_rest", "http_429", 1, 0.0)
    for bad in ("kalshi_ws", "nowhere:stall", "kalshi_ws:explode", "a:b:c:d:e", "kalshi_ws:stall:x",
                "kalshi_rest:http_5xx:stauts=502", "kalshi_rest:http_5xx:status=502:2"):
        with pytest.raises(ValueError):
            parse_fault(bad)


def test_parse_fault_options() -> None:
    assert parse_fault("kalshi_rest:http_5xx:3:status=502") == FaultSpec("kalshi_rest", "http_5xx", 3, 0.0,
                                                                         {"status": 502})
    assert parse_fault("kalshi_ws:stall:duration_s=20:count=2") == FaultSpec("kalshi_ws", "stall", 2, 20.0)
    spec = parse_fault("coinbase_ws:missing_fields:fields=best_bid,best_ask:api=exchange:channel=ticker")
    assert spec.params == {"fields": ["best_bid", "best_ask"], "api": "exchange", "channel": "ticker"}
    assert parse_fault("kalshi_rest:missing_fields:fields=title").params == {"fields": ["title"]}
    assert parse_fault('coinbase_rest:unknown_fields:fields={"x": 1}').params == {"fields": {"x": 1}}
    plan = FaultPlan()
    spec.inject(plan)
    (pending,) = plan.pending()
    assert (pending.target, pending.kind, pending.params) == ("coinbase_ws", "missing_fields", spec.params)


async def test_fault_options_reach_the_simulated_server(sim: Simulator) -> None:
    parse_fault("kalshi_rest:http_5xx:1:status=502").inject(sim.faults)
    parse_fault("kalshi_rest:missing_fields:fields=title").inject(sim.faults)
    async with httpx.AsyncClient(base_url=sim.kalshi_rest_url) as client:
        assert (await client.get("/markets", params={"limit": 5})).status_code == 502
        markets = (await client.get("/markets", params={"limit": 5})).json()["markets"]
    assert markets and all("title" not in m and "yes_sub_title" in m for m in markets)


def test_sim_command_prints_urls_and_environment() -> None:
    result = CliRunner().invoke(
        app, ["sim", "--window-minutes", "2", "--duration", "0.3", "--fault", "kalshi_rest:http_5xx:2:status=502",
              "--auth"],
        terminal_width=300,
    )
    assert result.exit_code == 0, result.output
    for name in ("KALSHI_REST_URL=http://127.0.0.1:", "KALSHI_WS_URL=ws://127.0.0.1:", "KALSHI_API_KEY_ID=",
                 "KALSHI_PRIVATE_KEY_PATH=", "COINBASE_WS_URL=ws://127.0.0.1:", "COINBASE_REST_URL=http://127.0.0.1:",
                 "COINBASE_EXCHANGE_WS_URL=ws://127.0.0.1:", "COINBASE_EXCHANGE_REST_URL=http://127.0.0.1:"):
        assert f"export {name}" in result.output
    assert "'kalshi_rest/http_5xx': {'injected': 2, 'applied': 0}" in result.output


def test_sim_command_rejects_a_bad_fault() -> None:
    result = CliRunner().invoke(app, ["sim", "--fault", "kalshi_ws:explode", "--duration", "0.1"])
    assert result.exit_code == 2 and "unknown fault kind" in result.output
    result = CliRunner().invoke(app, ["sim", "--fault", "kalshi_rest:http_5xx:statsu=502", "--duration", "0.1"])
    assert result.exit_code == 2 and "unknown fault option 'statsu'" in result.output
