"""Settings: environment variables and `.env`, validated once, with one-line errors.

Every variable of the original system's Configuration section is accepted under its original name
(`DB_PATH`, `KALSHI_ENV`, `COINBASE_WS_URL`, ...). `DATABASE_URL` (any SQLAlchemy URL) overrides `DB_PATH`.
`KALSHI_ENV` selects the default REST and WebSocket roots; explicit `KALSHI_REST_URL`/`KALSHI_WS_URL` win.

Secrets (`KALSHI_API_KEY_ID`, `KALSHI_PRIVATE_KEY_PEM`) are `SecretStr`: their `repr`/`str` is masked, so
they cannot leak through logging or `kbtc config show` by accident.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

KALSHI_URLS: dict[str, tuple[str, str]] = {
    # (REST root, WebSocket URL) — reference/kalshi_api.md §1, the recommended external-api hosts.
    "prod": (
        "https://external-api.kalshi.com/trade-api/v2",
        "wss://external-api-ws.kalshi.com/trade-api/ws/v2",
    ),
    "demo": (
        "https://external-api.demo.kalshi.co/trade-api/v2",
        "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2",
    ),
}
COINBASE_REST_URL_DEFAULT = "https://api.coinbase.com"
# The legacy Exchange feed and REST root (reference/coinbase_api.md §2, §3.2), selected by COINBASE_SOURCE=exchange.
COINBASE_EXCHANGE_WS_URL_DEFAULT = "wss://ws-feed.exchange.coinbase.com"
COINBASE_EXCHANGE_REST_URL_DEFAULT = "https://api.exchange.coinbase.com"
DEFAULT_SERIES = ("KXBTC", "KXBTCD", "KXBTC15M")

CsvList = Annotated[tuple[str, ...], NoDecode]


class SettingsError(ValueError):
    """A configuration value is invalid; the message is one line naming the variable."""


class Settings(BaseSettings):
    """All runtime configuration. Field names map to the upper-case environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        frozen=True,
    )

    # Core
    db_path: Path = Path("./data/kalshi.sqlite")
    database_url: str | None = None
    log_path: Path = Path("./logs/app.jsonl")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    data_dir: Path = Path("./data")
    # Accepted for compatibility with the original system; kbtc never places orders.
    trading_enabled: bool = False

    # Kalshi
    kalshi_env: Literal["demo", "prod"] = "demo"
    kalshi_api_key_id: SecretStr | None = None
    kalshi_private_key_path: Path | None = None
    kalshi_private_key_pem: SecretStr | None = None
    kalshi_private_key_passphrase: SecretStr | None = None
    # Names of the Prefect Secret blocks flows read the Kalshi credentials from when env/file give none.
    kalshi_key_id_block: str = "kalshi-api-key-id"
    kalshi_private_key_block: str = "kalshi-private-key"
    kalshi_rest_url_override: str | None = Field(default=None, validation_alias="KALSHI_REST_URL")
    kalshi_ws_url_override: str | None = Field(default=None, validation_alias="KALSHI_WS_URL")
    kalshi_market_tickers: CsvList = ()
    kalshi_event_ticker: str | None = None
    kalshi_series_ticker: str | None = None
    kalshi_series: CsvList = DEFAULT_SERIES
    kalshi_market_status: str = "open"
    kalshi_market_limit: int = Field(default=1000, ge=1, le=1000)
    # Basic tier read budget (reference/kalshi_api.md §6).
    kalshi_reads_per_second: float = Field(default=20.0, gt=0)

    # Coinbase
    coinbase_ws_url: str = "wss://advanced-trade-ws.coinbase.com"
    coinbase_rest_url: str = COINBASE_REST_URL_DEFAULT
    coinbase_product_id: str = "BTC-USD"
    coinbase_stale_seconds: float = Field(default=10.0, gt=0)
    # advanced: Advanced Trade WS + public candles (COINBASE_WS_URL, COINBASE_REST_URL);
    # exchange: the legacy Exchange feed + Exchange candles (COINBASE_EXCHANGE_WS_URL, COINBASE_EXCHANGE_REST_URL).
    coinbase_source: Literal["advanced", "exchange"] = "advanced"
    coinbase_exchange_ws_url: str = COINBASE_EXCHANGE_WS_URL_DEFAULT
    coinbase_exchange_rest_url: str = COINBASE_EXCHANGE_REST_URL_DEFAULT
    # Heartbeats arrive every second (§1.5): this long without one means the socket is dead.
    coinbase_heartbeat_timeout_seconds: float = Field(default=5.0, gt=0)
    coinbase_market_trades: bool = False

    # Collectors
    collector_seconds: float = Field(default=60.0, ge=0)

    # Edge engine (docs/EDGE_VALIDATION.md): the Coinbase-to-index basis correction (on/off, so its value can be
    # measured), the settlement index's own prints as spot when fresh, and σ's fallback when the estimate is not
    # ready (`prior`: the prior σ; `none`: no σ, the market is skipped as sigma_not_ready).
    edge_basis: bool = True
    edge_index_spot: bool = True
    edge_sigma_fallback: Literal["prior", "none"] = "prior"

    @field_validator("kalshi_market_tickers", "kalshi_series", mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("kalshi_env", mode="before")
    @classmethod
    def _lower_env(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("coinbase_source", "edge_sigma_fallback", mode="before")
    @classmethod
    def _lower_source(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator(
        "database_url", "kalshi_rest_url_override", "kalshi_ws_url_override", "kalshi_series_ticker",
        "kalshi_event_ticker", mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return (value.strip() or None) if isinstance(value, str) else value

    @cached_property
    def kalshi_rest_url(self) -> str:
        """REST root including `/trade-api/v2`: the override, else the default for `KALSHI_ENV`."""
        return (self.kalshi_rest_url_override or KALSHI_URLS[self.kalshi_env][0]).rstrip("/")

    @cached_property
    def kalshi_ws_url(self) -> str:
        """WebSocket URL: the override, else the default for `KALSHI_ENV`."""
        return self.kalshi_ws_url_override or KALSHI_URLS[self.kalshi_env][1]

    @property
    def catalog_series(self) -> tuple[str, ...]:
        """The series `refresh-markets`/`scan-markets` list: `KALSHI_SERIES_TICKER` when set, else `KALSHI_SERIES`."""
        return (self.kalshi_series_ticker,) if self.kalshi_series_ticker else self.kalshi_series

    @property
    def coinbase_feed_ws_url(self) -> str:
        """The WebSocket URL of the selected `COINBASE_SOURCE`."""
        return self.coinbase_exchange_ws_url if self.coinbase_source == "exchange" else self.coinbase_ws_url

    @cached_property
    def sqlalchemy_url(self) -> str:
        """The database URL: `DATABASE_URL` when set, else SQLite at `DB_PATH`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.db_path}"

    @property
    def has_kalshi_credentials(self) -> bool:
        """True when a key id and a private key (file or PEM) are configured."""
        has_key = self.kalshi_private_key_path is not None or self.kalshi_private_key_pem is not None
        return self.kalshi_api_key_id is not None and has_key

    def public_view(self) -> dict[str, str]:
        """Every setting as display strings, secrets masked (for `kbtc config show`)."""
        view: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                shown = "********"
            elif value is None:
                shown = ""
            elif isinstance(value, tuple):
                shown = ",".join(value)
            else:
                shown = str(value)
            view[_env_name(name)] = shown
        view["(effective) KALSHI_REST_URL"] = self.kalshi_rest_url
        view["(effective) KALSHI_WS_URL"] = self.kalshi_ws_url
        view["(effective) DATABASE_URL"] = mask_url_password(self.sqlalchemy_url)
        return view


def _env_name(field_name: str) -> str:
    alias = Settings.model_fields[field_name].validation_alias
    return alias if isinstance(alias, str) else field_name.upper()


def mask_url_password(url: str) -> str:
    """Replace the password of a database URL with `***`."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def load_settings(**overrides: Any) -> Settings:
    """Load settings from the environment and `.env`; raise `SettingsError` with a one-line message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc)) from None


def format_validation_error(exc: ValidationError) -> str:
    """One line per bad variable: `NAME: problem (got 'value')`, joined with '; '."""
    parts = []
    for error in exc.errors():
        loc = error.get("loc") or ("?",)
        field = str(loc[0])
        name = _env_name(field) if field in Settings.model_fields else field.upper()
        got = error.get("input")
        shown = "" if got is None or "secret" in field or "pem" in field else f" (got {got!r})"
        parts.append(f"{name}: {error.get('msg', 'invalid value')}{shown}")
    return "invalid configuration: " + "; ".join(parts)
