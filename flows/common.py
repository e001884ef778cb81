"""What every flow shares: settings with Prefect Secret blocks, the transient-error retry policy."""

from __future__ import annotations

from typing import Any, cast

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun
from pydantic import SecretStr

from kbtc.config import Settings, load_settings
from kbtc.log import redactor
from kbtc.transient import is_transient

# Task retries: 3 attempts after the first, 2 s → 8 s → 30 s, each ±50 % jitter.
RETRY_DELAYS_S = [2, 8, 30]
RETRY_JITTER = 0.5


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
