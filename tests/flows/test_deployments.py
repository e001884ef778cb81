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



def test_deploy_and_serve_reject_unknown_deployment_names() -> None:
    from typer.testing import CliRunner

    from kbtc.cli import app

    for command in (["deploy", "--name", "no-such-deployment"], ["serve", "--only", "no-such-deployment"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code != 0 and "unknown deployment(s): no-such-deployment" in result.output, command

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


@pytest.mark.slow
@pytest.mark.serial(alone=False)  # mostly waits on a Prefect server and one worker run; no timing window
def test_a_process_worker_runs_a_deployment_and_its_pull_steps(prefect_server: None, tmp_path: Path) -> None:
    """`kbtc deploy --name score-and-settle`, then `prefect worker start --run-once` runs a flow run of it: the
    pull steps change into KBTC_HOME and migrate a fresh database (the flow itself never migrates, so it could
    not complete without them)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    from kbtc.db.engine import make_engine
    from kbtc.db.migrate import current_revision, head_revision

    repo = Path(__file__).resolve().parents[2]
    database_url = f"sqlite:///{tmp_path / 'worker.sqlite'}"
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "KBTC_HOME": str(repo),
           "DATABASE_URL": database_url, "DATA_DIR": str(tmp_path / "data"), "LOG_PATH": str(tmp_path / "app.jsonl"),
           # The pull step runs `kbtc db upgrade`: the worker's PATH must hold this venv's `kbtc`.
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    async def create_pool() -> None:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name="kbtc", type="process"), overwrite=True)

    asyncio.run(create_pool())
    done = subprocess.run([sys.executable, "-m", "kbtc.cli", "deploy", "--name", "score-and-settle"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    async def create_run() -> tuple[Any, Any]:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("score-and-settle/score-and-settle")
            return deployment, await client.create_flow_run_from_deployment(deployment.id)

    deployment, flow_run = asyncio.run(create_run())
    # `{{ $KBTC_HOME }}` was substituted at deploy time, from the deployer's environment.
    directories = [step[name]["directory"] for step in deployment.pull_steps or [] for name in step
                   if name.endswith("set_working_directory")]
    assert directories == [str(repo)]
    worker = subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "kbtc", "--type", "process", "--run-once",
         "--limit", "1"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=150, check=False)

    async def finish() -> Any:
        async with get_client() as client:
            run = await client.read_flow_run(flow_run.id)
            await client.delete_deployment(deployment.id)  # leave the shared test server without schedules
            return run

    run = asyncio.run(finish())
    assert run.state is not None and run.state.is_completed(), (
        f"{run.state}\n{worker.stdout[-3000:]}\n{worker.stderr[-3000:]}")
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()  # the pull step migrated the fresh database
    finally:
        engine.dispose()
