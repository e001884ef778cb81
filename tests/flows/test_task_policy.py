"""The task policy of every flow: tasks retry transient errors only (jittered backoff) and time out; flows have a
timeout and a run name; loop ticks and the catalog refresh really go through Prefect's retries."""

from __future__ import annotations

import importlib
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl
import pytest
from prefect import Flow, Task
from prefect.cache_policies import NO_CACHE

from flows import common
from flows.common import retry_if_transient
from flows.deployments import load_deployment_specs, load_flow
from kbtc.config import load_settings
from kbtc.pipeline.edges import LiveTickCache
from kbtc.pipeline.kalshi_catalog import CatalogSummary, SeriesResult
from kbtc.pipeline.opportunities import OpportunityTick
from kbtc.transient import is_transient


def _objects(kind: type) -> dict[str, Any]:
    found: dict[str, Any] = {}
    # By file: under pytest, the `flows` package's __path__ also holds tests/flows.
    for path in sorted(Path(common.__file__).parent.glob("*.py")):
        module = importlib.import_module(f"flows.{path.stem}")
        for value in vars(module).values():
            if isinstance(value, kind):
                found[value.name] = value
    return found


def test_every_task_retries_transient_errors_only_and_times_out() -> None:
    tasks: dict[str, Task[..., Any]] = _objects(Task)
    assert {"refresh-markets", "poll-quotes", "refresh-settlements", "edge-tick", "opportunity-tick",
            "opportunity-catch-up", "data-health", "collect-streams", "settle-ledger", "score-snapshots",
            "build-performance-report", "upgrade-schema", "prune", "sweep"} <= set(tasks)
    for name, task in tasks.items():
        assert task.retries >= 2, name
        assert task.retry_condition_fn is retry_if_transient, name
        assert task.retry_jitter_factor and isinstance(task.retry_delay_seconds, list), name
        assert task.timeout_seconds, name
        assert task.cache_policy is NO_CACHE, name


def test_every_flow_has_a_timeout_and_a_run_name() -> None:
    all_flows: dict[str, Flow[..., Any]] = _objects(Flow)
    assert {"pipeline", "edge-loop", "opportunity-loop", "score-and-settle", "model-performance-report",
            "migrate-database", "parameter-sweep", "prune", "demo"} <= set(all_flows)
    for name, flow in all_flows.items():
        assert flow.timeout_seconds, name
        assert flow.flow_run_name, name
    for spec in load_deployment_specs():
        flow = load_flow(spec.entrypoint)
        assert flow.timeout_seconds is not None
        run_s = max([spec.parameters.get(key, 0) for key in ("seconds", "duration_seconds")])
        assert flow.timeout_seconds > run_s + 60, spec.name  # a deployment's run ends well before its timeout


def _catalog(*errors: tuple[str | None, bool]) -> CatalogSummary:
    return CatalogSummary([SeriesResult(f"KX{i}", markets=0 if error else 3, error=error, error_transient=transient)
                           for i, (error, transient) in enumerate(errors)])


@pytest.mark.parametrize(
    ("errors", "transient"),
    [
        ([("HTTP 503", True), (None, False)], True),
        ([("HTTP 503", True), ("timed out", True)], True),
        ([("HTTP 503", True), ("not the documented shape", False)], False),
        ([("HTTP 404 not found", False)], False),
    ],
)
def test_catalog_failure_is_transient_only_when_every_failure_is(
        monkeypatch: pytest.MonkeyPatch, errors: list[tuple[str | None, bool]], transient: bool) -> None:
    from flows import steps

    monkeypatch.setattr(steps, "run_with_client", lambda settings, step: _catalog(*errors))
    with pytest.raises(steps.CatalogRefreshError) as caught:
        steps.refresh_markets_task.fn(load_settings())
    assert is_transient(caught.value) is transient
    assert set(caught.value.failed) == {f"KX{i}" for i, (error, _) in enumerate(errors) if error}


@pytest.mark.slow
def test_refresh_markets_retries_a_transient_series_failure(prefect_server: None, sqlite_url: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from flows import kalshi, steps

    answers = [_catalog(("HTTP 503", True)), _catalog((None, False))]
    calls: list[int] = []

    def fake(settings: object, step: object) -> CatalogSummary:
        calls.append(1)
        return answers[len(calls) - 1]

    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setattr(steps, "run_with_client", fake)
    monkeypatch.setattr(kalshi, "refresh_markets_task", steps.refresh_markets_task.with_options(retry_delay_seconds=0))
    assert kalshi.refresh_markets_flow()["markets"] == 3
    assert len(calls) == 2

    calls.clear()
    answers[0] = _catalog(("HTTP 404", False))
    with pytest.raises(steps.CatalogRefreshError):
        kalshi.refresh_markets_flow()
    assert len(calls) == 1  # bad input is not retried


@pytest.mark.slow
def test_edge_loop_ticks_are_task_runs_that_retry(prefect_server: None, sqlite_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from flows import steps
    from flows.edges import edge_loop

    edges = pl.DataFrame({"market_ticker": ["KXBTCD-26NOV2517-T95000"], "skip_reason": [None],
                          "ev_yes_dollars": [0.05], "ev_no_dollars": [-0.07]}, schema_overrides={"skip_reason": pl.String})
    calls: list[int] = []
    caches: list[object] = []

    def flaky(engine: object, asof_ts: int, settings: object, cache: object) -> SimpleNamespace:
        calls.append(asof_ts)
        caches.append(cache)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return SimpleNamespace(edges=edges)

    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setattr(steps, "compute_edge_tick", flaky)
    # The retry (1 s ± 50 %) absorbed the failure: the loop itself saw none.
    assert edge_loop(duration_seconds=0) == {"ticks": 1, "failures": 0, "skipped": 0, "priced": 1}
    assert len(calls) == 2
    # The loop's one cache reaches every attempt (the retry too), so ticks read incrementally.
    assert isinstance(caches[0], LiveTickCache) and caches[1] is caches[0]


@pytest.mark.slow
def test_opportunity_loop_ticks_are_task_runs_that_retry(prefect_server: None, sqlite_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from flows import steps
    from flows.ledger import opportunity_loop

    calls: list[int | None] = []

    def flaky(engine: object, now_ts: int, params: object, *, after_asof_ts: int | None,
              emit_passes: bool) -> list[OpportunityTick]:
        calls.append(after_asof_ts)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return [OpportunityTick("no_edge_snapshots", None, 0, 0, 0, {}, pl.DataFrame())]

    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setattr(steps, "run_opportunity_catch_up", flaky)
    assert opportunity_loop(duration_seconds=0) == {"ticks": 1, "evaluated": 0, "takes": 0, "failures": 0}
    assert calls == [None, None]
