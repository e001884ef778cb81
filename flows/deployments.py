"""prefect.yaml as the one registry of deployments: `prefect deploy --all` reads it for work pools, and
`kbtc serve` turns the same entries into served deployments (one process, no work pool, schedules kept).

Only the keys both modes share are read: name, entrypoint, description, tags, parameters, schedules
(cron / interval / rrule with timezone, slug, active) and concurrency_limit.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval, RRule, Schedule

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """One `deployments:` entry of prefect.yaml."""

    name: str
    entrypoint: str
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    concurrency_limit: dict[str, Any] | int | None = None


def load_deployment_specs(path: Path = PREFECT_YAML) -> list[DeploymentSpec]:
    """The deployments declared in prefect.yaml (YAML aliases resolved)."""
    document = yaml.safe_load(path.read_text())
    return [
        DeploymentSpec(
            name=entry["name"],
            entrypoint=entry["entrypoint"],
            description=entry.get("description"),
            tags=list(entry.get("tags") or []),
            parameters=dict(entry.get("parameters") or {}),
            schedules=list(entry.get("schedules") or []),
            concurrency_limit=entry.get("concurrency_limit"),
        )
        for entry in document.get("deployments") or []
    ]


def load_flow(entrypoint: str) -> Flow[..., Any]:
    """Import the flow an entrypoint names (`flows/x.py:func` or `flows.x:func`)."""
    module_path, _, attribute = entrypoint.partition(":")
    module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
    candidate = getattr(module, attribute)
    if not isinstance(candidate, Flow):
        raise TypeError(f"{entrypoint} is not a Prefect flow")
    return candidate


def build_schedule(entry: dict[str, Any]) -> Schedule:
    """A prefect.yaml schedule entry as a Prefect schedule."""
    common: dict[str, Any] = {
        "timezone": entry.get("timezone"),
        "active": entry.get("active", True),
        "slug": entry.get("slug"),
        "parameters": entry.get("parameters"),
    }
    if "cron" in entry:
        return Cron(entry["cron"], **common)
    if "interval" in entry:
        return Interval(timedelta(seconds=float(entry["interval"])), **common)
    if "rrule" in entry:
        return RRule(entry["rrule"], **common)
    raise ValueError(f"schedule needs cron, interval or rrule: {entry}")


def build_concurrency(limit: dict[str, Any] | int | None) -> ConcurrencyLimitConfig | int | None:
    """prefect.yaml's `concurrency_limit` (an int or `{limit, collision_strategy}`) as Prefect's config."""
    if limit is None or isinstance(limit, int):
        return limit
    return ConcurrencyLimitConfig(
        limit=int(limit["limit"]),
        collision_strategy=ConcurrencyLimitStrategy(limit.get("collision_strategy", "ENQUEUE")),
    )


def runner_deployments(specs: list[DeploymentSpec]) -> list[RunnerDeployment]:
    """Served deployments for the specs: the same flows, parameters, schedules and limits as prefect.yaml."""
    deployments: list[RunnerDeployment] = []
    for spec in specs:
        deployment = load_flow(spec.entrypoint).to_deployment(
            name=spec.name,
            description=spec.description,
            tags=spec.tags,
            parameters=spec.parameters,
            schedules=[build_schedule(entry) for entry in spec.schedules],
            concurrency_limit=build_concurrency(spec.concurrency_limit),
        )
        # `to_deployment` is dual sync/async; called from synchronous code it returns the deployment itself.
        assert isinstance(deployment, RunnerDeployment)
        deployments.append(deployment)
    return deployments


def serve_all(path: Path = PREFECT_YAML, *, only: list[str] | None = None) -> None:
    """Serve every deployment of prefect.yaml (or those named in `only`) from this process until stopped."""
    specs = [spec for spec in load_deployment_specs(path) if only is None or spec.name in only]
    if not specs:
        raise ValueError("no deployment selected")
    # Schedules stay active when the process stops, so a restarted `kbtc serve` simply carries on.
    serve(*runner_deployments(specs), pause_on_shutdown=False)


def _patch_worker_filter() -> None:
    """Prefect 3.8.8's `read_workers_for_work_pool` sends `limit: null`, which its own server rejects (422), and
    `prefect deploy` calls it after every deployment: send explicit paging instead (docs/OPERATIONS.md)."""
    from prefect.client.orchestration._work_pools.client import WorkPoolAsyncClient
    from prefect.client.schemas.filters import WorkerFilter
    from prefect.client.schemas.objects import Worker

    original = WorkPoolAsyncClient.read_workers_for_work_pool
    if getattr(original, "_kbtc_paged", False):
        return

    async def paged(self: WorkPoolAsyncClient, work_pool_name: str, worker_filter: WorkerFilter | None = None,
                    offset: int | None = None, limit: int | None = None) -> list[Worker]:
        return await original(self, work_pool_name, worker_filter, offset=offset or 0, limit=limit or 200)

    paged._kbtc_paged = True  # type: ignore[attr-defined]
    WorkPoolAsyncClient.read_workers_for_work_pool = paged  # type: ignore[method-assign]


def deploy_all(path: Path = PREFECT_YAML, *, only: list[str] | None = None) -> int:
    """`prefect deploy --all` for prefect.yaml (from its directory, where the entrypoints are relative to), or
    `prefect deploy --name ...` for the deployments named in `only`; return the exit status."""
    import sys

    from prefect.cli import app

    _patch_worker_filter()
    cwd, argv = Path.cwd(), sys.argv
    os.chdir(path.parent)
    selection = [arg for name in only for arg in ("--name", name)] if only else ["--all"]
    # Prefect's CLI entry point reads its arguments from sys.argv.
    sys.argv = ["prefect", "--no-prompt", "deploy", *selection, "--prefect-file", str(path)]
    try:
        app()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(cwd)
        sys.argv = argv
    return 0
