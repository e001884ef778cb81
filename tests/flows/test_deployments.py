"""prefect.yaml: every entrypoint imports as a flow, every schedule parses, and `kbtc serve` builds the same
deployments (names, schedules, parameters, concurrency limits) without a server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prefect import Flow
from prefect.client.schemas.objects import ConcurrencyLimitStrategy

from flows.deployments import (
    build_concurrency,
    build_schedule,
    load_deployment_specs,
    load_flow,
    runner_deployments,
)


def test_every_deployment_entrypoint_is_a_flow_with_parsed_schedules() -> None:
    specs = load_deployment_specs()
    assert specs
    assert len({spec.name for spec in specs}) == len(specs)
    for spec in specs:
        assert isinstance(load_flow(spec.entrypoint), Flow)
        assert spec.schedules, f"{spec.name} has no schedule"
        for entry in spec.schedules:
            build_schedule(entry)
        limit = build_concurrency(spec.concurrency_limit)
        assert limit is not None and not isinstance(limit, int)
        assert limit.collision_strategy is ConcurrencyLimitStrategy.CANCEL_NEW
        # One run at a time, except collector sessions, which overlap their successor by design.
        overlapping = spec.parameters.get("seconds", 0) > min(
            entry.get("interval", float("inf")) for entry in spec.schedules)
        assert limit.limit == (2 if overlapping else 1), spec.name


def test_a_deployment_per_step_flow() -> None:
    names = {spec.name for spec in load_deployment_specs()}
    assert {"refresh-markets", "collect-streams", "poll-quotes", "edge-loop", "opportunity-loop",
            "refresh-settlements", "score-and-settle", "model-performance-report", "migrate-database", "prune",
            "pipeline"} <= names
    by_name = {spec.name: spec for spec in load_deployment_specs()}
    collect = by_name["collect-streams"]
    assert collect.parameters["seconds"] > collect.schedules[0]["interval"]  # sessions overlap
    assert by_name["prune"].schedules[0]["cron"].split()[2:] == ["*", "*", "*"]  # daily
    # Active by default: every deployment but the single-deployment alternative `pipeline`.
    inactive = {name for name, spec in by_name.items() if not all(s.get("active", True) for s in spec.schedules)}
    assert inactive == {"pipeline"}


def test_runner_deployments_match_the_yaml() -> None:
    specs = load_deployment_specs()
    deployments = runner_deployments(specs)
    for spec, deployment in zip(specs, deployments, strict=True):
        assert deployment.name == spec.name
        assert deployment.parameters == spec.parameters
        assert len(deployment.schedules) == len(spec.schedules)
        assert deployment.concurrency_limit == (spec.concurrency_limit or {}).get("limit")


def test_schedule_and_limit_shapes(tmp_path: Path) -> None:
    assert build_concurrency(None) is None
    assert build_concurrency(2) == 2
    interval = build_schedule({"interval": 300, "slug": "five-minutes"})
    assert interval.interval.total_seconds() == 300  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="cron, interval or rrule"):
        build_schedule({"timezone": "UTC"})
    path = tmp_path / "prefect.yaml"
    path.write_text("deployments:\n  - name: x\n    entrypoint: flows/common.py:resolve_settings\n")
    (spec,) = load_deployment_specs(path)
    with pytest.raises(TypeError, match="not a Prefect flow"):
        load_flow(spec.entrypoint)


@pytest.mark.slow
def test_kbtc_deploy_registers_every_deployment(prefect_server: None, tmp_path: Path) -> None:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.sorting import DeploymentSort
    from prefect.settings import PREFECT_API_URL

    async def create_pool() -> None:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name="kbtc", type="process"), overwrite=True)

    asyncio.run(create_pool())
    # As a user runs it: a separate process against the server (Prefect's CLI is not meant to run inside pytest).
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "KBTC_HOME": str(Path.cwd()),
           "LOG_PATH": str(tmp_path / "app.jsonl")}
    done = subprocess.run([sys.executable, "-m", "kbtc.cli", "deploy"], env=env, capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    async def deployed() -> dict[str, Any]:
        async with get_client() as client:
            found = await client.read_deployments(limit=200, offset=0, sort=DeploymentSort.NAME_ASC)
            for deployment in found:  # leave the shared test server without running schedules
                await client.delete_deployment(deployment.id)
            return {d.name: d for d in found}

    by_name = asyncio.run(deployed())
    assert set(by_name) == {spec.name for spec in load_deployment_specs()}
    pipeline = by_name["pipeline"]
    assert pipeline.work_pool_name == "kbtc"
    steps = pipeline.pull_steps or []
    assert any("run_shell_script" in next(iter(step)) for step in steps)

