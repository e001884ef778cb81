"""What every flow shares: settings with Prefect Secret blocks, logging, the task policy (retries of transient
errors with jittered backoff, a timeout, no cache) and run names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from pydantic import SecretStr

from kbtc.config import Settings, load_settings
from kbtc.log import configure_logging, redactor
from kbtc.transient import is_transient

# Task retries: 3 attempts after the first, 2 s → 8 s → 30 s, each ±50 % jitter.
RETRY_DELAYS_S = (2, 8, 30)
# A bounded loop's tick is superseded by the next one 10 s later: retry it sooner and fewer times.
TICK_RETRY_DELAYS_S = (1, 3)
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
        # `_sync=True`: also from the async `pipeline` flow's worker thread, where Prefect would otherwise
        # dispatch to the coroutine `aload`.
        block = cast("Secret[str]", Secret.load(name, _sync=True))  # type: ignore[call-arg]
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


def task_options(timeout_seconds: float, *, retry_delays_s: Sequence[float] = RETRY_DELAYS_S) -> dict[str, Any]:
    """`@task` keyword arguments of every kbtc task: retries of transient errors only, with jittered backoff
    (`retry_delays_s`, ±50 %), a timeout (a timed-out attempt is transient, so it is retried too), and no cache
    (every task reads and writes the database)."""
    return {
        "retries": len(retry_delays_s),
        "retry_delay_seconds": list(retry_delays_s),
        "retry_jitter_factor": RETRY_JITTER,
        "retry_condition_fn": retry_if_transient,
        "timeout_seconds": timeout_seconds,
        "cache_policy": NO_CACHE,
    }


def flow_settings() -> Settings:
    """`resolve_settings()` plus the JSONL log at `LOG_PATH` (secrets registered for redaction).

    Every flow starts with this, so a step's own structured events reach the same JSONL log as under the CLI,
    while the flow's progress lines go through Prefect's run logger.
    """
    settings = resolve_settings()
    secrets = [
        secret.get_secret_value() if secret is not None else None
        for secret in (settings.kalshi_api_key_id, settings.kalshi_private_key_pem,
                       settings.kalshi_private_key_passphrase)
    ]
    # No console handler: a flow's console is Prefect's (set PREFECT_LOGGING_EXTRA_LOGGERS=kbtc to forward).
    configure_logging(settings.log_path, settings.log_level, console=False, secrets=secrets)
    return settings


def run_name(template: str) -> Callable[[], str]:
    """A `flow_run_name` callable: the template filled with the run's parameters, then `-<UTC start time>`,
    e.g. `run_name("report-{scope}")` names a run `report-policy-20261125T101500Z`."""

    def name() -> str:
        from prefect.runtime import flow_run

        return f"{template.format(**flow_run.parameters)}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"

    return name
