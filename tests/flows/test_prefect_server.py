"""Prefect's server starts with the pinned dependency set (catches a resolver picking a broken FastAPI)."""

from __future__ import annotations

import pytest
from prefect import flow, get_client, task
from prefect.client.schemas.sorting import FlowRunSort


@task(retries=1, retry_delay_seconds=0)
def _double(x: int) -> int:
    return 2 * x


@flow(name="kbtc-smoke")
def _smoke_flow(x: int) -> int:
    return _double(x)


@pytest.mark.slow
def test_flow_runs_against_the_temporary_server(prefect_server: None) -> None:
    assert _smoke_flow(21) == 42


@pytest.mark.slow
async def test_server_records_the_flow_run(prefect_server: None) -> None:
    _smoke_flow(1)
    async with get_client() as client:
        assert (await client.api_healthcheck()) is None
        # prefect 3.8.8's client sends null limit/sort by default, which this server rejects (422): be explicit.
        runs = await client.read_flow_runs(limit=50, sort=FlowRunSort.START_TIME_DESC)
    assert any(run.state is not None and run.state.is_completed() for run in runs)
