"""`kbtc sim`: prints the URLs and environment, accepts faults, rejects bad ones with one line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kbtc.cli import app
from kbtc.commands.sim import parse_fault


def test_parse_fault() -> None:
    assert parse_fault("kalshi_ws:stall:2:7.5") == ("kalshi_ws", "stall", 2, 7.5)
    assert parse_fault("kalshi_rest:http_429") == ("kalshi_rest", "http_429", 1, 0.0)
    for bad in ("kalshi_ws", "nowhere:stall", "kalshi_ws:explode", "a:b:c:d:e"):
        with pytest.raises(ValueError):
            parse_fault(bad)


def test_sim_command_prints_urls_and_environment() -> None:
    result = CliRunner().invoke(
        app, ["sim", "--window-minutes", "2", "--duration", "0.3", "--fault", "kalshi_rest:http_5xx:2", "--auth"],
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
