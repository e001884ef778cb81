"""What every flow shares: settings with Prefect Secret blocks, the transient-error retry policy."""

from __future__ import annotations

import sqlite3
from typing import Any, cast

import httpx
from prefect import Task
from prefect.client.schemas.objects import State, TaskRun
from pydantic import SecretStr

from kbtc.config import Settings, load_settings
from kbtc.log import redactor

TRANSIENT_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Task retries: 3 attempts after the first, 2 s → 8 s → 30 s, each ±50 % jitter.
RETRY_DELAYS_S = [2, 8, 30]
RETRY_JITTER = 0.5


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: timeouts, dropped connections, 429/5xx, a locked database.

    Venue errors say so themselves with a boolean `transient` attribute; bad input never retries.
    """
    flagged = getattr(exc, "transient", None)
    if isinstance(flagged, bool):
        return flagged
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in TRANSIENT_HTTP_STATUS
    if isinstance(exc, (httpx.TimeoutException, httpx.TransportError, TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, sqlite3.OperationalError) or type(exc).__name__ == "OperationalError":
        return "locked" in str(exc) or "busy" in str(exc)
    return False


def retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect `retry_condition_fn`: retry only when the task failed with a transient error."""
    try:
        state.result()
    except Exception as exc:  # the state's exception is what we classify
        return is_transient(exc)
    return False


def _secret_block_value(name: str) -> str | None:
    from prefect.blocks.system import Secret

    try:
        # Called from synchronous flow code, where `load` returns the block itself.
        block = cast("Secret[str]", Secret.load(name))
    except ValueError:  # no block of that name
        return None
    value = block.get()
    return value if isinstance(value, str) and value else None


def resolve_settings() -> Settings:
    """Settings for a flow run: env/.env first, then the Kalshi credentials from Prefect Secret blocks."""
    settings = load_settings()
    updates: dict[str, SecretStr] = {}
    if settings.kalshi_api_key_id is None:
        key_id = _secret_block_value(settings.kalshi_key_id_block)
        if key_id:
            updates["kalshi_api_key_id"] = SecretStr(key_id)
    if settings.kalshi_private_key_path is None and settings.kalshi_private_key_pem is None:
        pem = _secret_block_value(settings.kalshi_private_key_block)
        if pem:
            updates["kalshi_private_key_pem"] = SecretStr(pem)
    if not updates:
        return settings
    redactor.add(*(value.get_secret_value() for value in updates.values()))
    return settings.model_copy(update=updates)
