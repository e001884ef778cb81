"""What every command shares: settings with one-line errors, logging setup, the database engine, consoles."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console

from kbtc.config import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the `typer.Exit` to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def settings_or_exit() -> Settings:
    """Load settings, turning a bad value into a one-line error and exit status 2."""
    try:
        return load_settings()
    except SettingsError as exc:
        raise fail(str(exc)) from None


def setup(debug: bool = False) -> Settings:
    """Load settings and configure logging (JSONL file + console, secrets registered for redaction)."""
    from kbtc.log import configure_logging

    settings = settings_or_exit()
    secrets = [
        settings.kalshi_api_key_id.get_secret_value() if settings.kalshi_api_key_id else None,
        settings.kalshi_private_key_pem.get_secret_value() if settings.kalshi_private_key_pem else None,
        settings.kalshi_private_key_passphrase.get_secret_value()
        if settings.kalshi_private_key_passphrase
        else None,
    ]
    configure_logging(settings.log_path, "DEBUG" if debug else settings.log_level, secrets=secrets)
    return settings


def engine_or_exit(settings: Settings, *, bulk_load: bool = False) -> Engine:
    """Open the configured database; one line and exit status 2 when its schema is newer than this kbtc."""
    from kbtc.db.migrate import DatabaseTooNewError, open_engine

    try:
        return open_engine(settings.sqlalchemy_url, bulk_load=bulk_load)
    except DatabaseTooNewError as exc:
        raise fail(str(exc)) from None
