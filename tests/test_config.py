"""Settings: defaults, environment, .env, bad values as one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kbtc.cli import app
from kbtc.config import KALSHI_URLS, SettingsError, load_settings


def test_defaults() -> None:
    s = load_settings()
    assert s.db_path == Path("./data/kalshi.sqlite")
    assert s.log_path == Path("./logs/app.jsonl")
    assert s.sqlalchemy_url == "sqlite:///data/kalshi.sqlite"
    assert s.kalshi_env == "demo"
    assert (s.kalshi_rest_url, s.kalshi_ws_url) == KALSHI_URLS["demo"]
    assert s.coinbase_ws_url == "wss://advanced-trade-ws.coinbase.com"
    assert s.coinbase_product_id == "BTC-USD"
    assert s.kalshi_series == ("KXBTC", "KXBTCD", "KXBTC15M")
    assert s.trading_enabled is False
    assert not s.has_kalshi_credentials


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KALSHI_ENV", "PROD")
    monkeypatch.setenv("KALSHI_MARKET_TICKERS", "A-1, B-2,,")
    monkeypatch.setenv("COINBASE_STALE_SECONDS", "4.5")
    monkeypatch.setenv("DB_PATH", "/tmp/x.sqlite")
    s = load_settings()
    assert (s.kalshi_rest_url, s.kalshi_ws_url) == KALSHI_URLS["prod"]
    assert s.kalshi_market_tickers == ("A-1", "B-2")
    assert s.coinbase_stale_seconds == 4.5
    assert s.sqlalchemy_url == "sqlite:////tmp/x.sqlite"

    monkeypatch.setenv("KALSHI_REST_URL", "http://127.0.0.1:9/trade-api/v2/")
    monkeypatch.setenv("KALSHI_WS_URL", "ws://127.0.0.1:9/trade-api/ws/v2")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u:pw@h/db")
    s = load_settings()
    assert s.kalshi_rest_url == "http://127.0.0.1:9/trade-api/v2"
    assert s.kalshi_ws_url == "ws://127.0.0.1:9/trade-api/ws/v2"
    assert s.sqlalchemy_url == "postgresql+psycopg://u:pw@h/db"
    assert "pw" not in s.public_view()["(effective) DATABASE_URL"]


def test_series_ticker_narrows_the_catalog_series(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().catalog_series == ("KXBTC", "KXBTCD", "KXBTC15M")
    monkeypatch.setenv("KALSHI_SERIES_TICKER", " KXBTC15M ")
    monkeypatch.setenv("KALSHI_EVENT_TICKER", "")
    s = load_settings()
    assert s.catalog_series == ("KXBTC15M",)
    assert s.kalshi_series == ("KXBTC", "KXBTCD", "KXBTC15M")  # the other steps keep KALSHI_SERIES
    assert s.kalshi_event_ticker is None
def test_edge_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    from kbtc.pipeline.edges import edge_settings_from

    default = edge_settings_from(load_settings())
    assert default.basis.enabled and default.params.index_spot and default.vol.fallback == "prior"
    monkeypatch.setenv("EDGE_BASIS", "off")
    monkeypatch.setenv("EDGE_INDEX_SPOT", "off")
    monkeypatch.setenv("EDGE_SIGMA_FALLBACK", "NONE")
    s = load_settings()
    assert (s.edge_basis, s.edge_index_spot, s.edge_sigma_fallback) == (False, False, "none")
    edge = edge_settings_from(s)
    assert not edge.basis.enabled and not edge.params.index_spot and edge.vol.fallback == "none"
    flagged = edge_settings_from(s, basis=True, index_spot=True, sigma_fallback="prior")  # a command's flags win
    assert flagged.basis.enabled and flagged.params.index_spot and flagged.vol.fallback == "prior"


def test_dotenv_file_is_read(isolated_env: Path) -> None:
    (isolated_env / ".env").write_text("KALSHI_SERIES=KXBTC15M\nCOLLECTOR_SECONDS=30\nKALSHI_API_KEY_ID=abc-123\n")
    s = load_settings()
    assert s.kalshi_series == ("KXBTC15M",)
    assert s.collector_seconds == 30
    assert s.kalshi_api_key_id is not None
    assert s.kalshi_api_key_id.get_secret_value() == "abc-123"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KALSHI_ENV", "staging"),
        ("COINBASE_STALE_SECONDS", "soon"),
        ("COINBASE_STALE_SECONDS", "-1"),
        ("TRADING_ENABLED", "maybe"),
        ("KALSHI_MARKET_LIMIT", "5000"),
        ("EDGE_BASIS", "sometimes"),
        ("EDGE_SIGMA_FALLBACK", "default"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert name in message
    assert "\n" not in message

    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert name in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3  # one logical line, maybe soft-wrapped


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KALSHI_API_KEY_ID", "key-id-very-secret-1234")
    monkeypatch.setenv("KALSHI_PRIVATE_KEY_PEM", "-----BEGIN PRIVATE KEY-----\nMIIEabc\n-----END PRIVATE KEY-----")
    result = CliRunner().invoke(app, ["config", "show"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "key-id-very-secret-1234" not in result.output
    assert "MIIEabc" not in result.output
    assert "********" in result.output
