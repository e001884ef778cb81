"""Scoring and reporting flows: close the ledger, score settled snapshots, publish the performance report.

Thin wrappers over kbtc.pipeline: every step is also a `kbtc` command (`settle-ledger`, `score-snapshots`,
`report-model-performance`). Artifacts use fixed keys, so each run adds a version to the same artifact:

- `kbtc-model-performance`                         the whole report as markdown
- `kbtc-report-<table>` (e.g. `kbtc-report-ledger`) one table artifact per report table
- `kbtc-plot-reliability`, `kbtc-plot-cumulative-pnl`, `kbtc-plot-brier-by-lead-time`
                                                   the PNG plots, as `data:` URLs (image artifacts take a URL)
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

from flows.artifacts import json_rows, publish_health
from flows.common import flow_settings, run_name, task_options
from flows.steps import data_health_task, now_ms
from kbtc.db.migrate import open_engine
from kbtc.pipeline.report import PerformanceReport, Scope, build_performance_report
from kbtc.pipeline.score_snapshots import score_snapshots
from kbtc.pipeline.settle_ledger import settle_ledger


def artifact_key(name: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for a report part."""
    return name.lower().replace("_", "-")


@task(name="settle-ledger", **task_options(300))
def settle_ledger_task(url: str) -> dict[str, float]:
    """Close open shadow positions whose market has a result."""
    engine = open_engine(url)
    try:
        run = settle_ledger(engine)
    finally:
        engine.dispose()
    return {"open_before": run.open_before, "settled": run.settled, "pnl_dollars": run.pnl_dollars}


@task(name="score-snapshots", **task_options(600))
def score_snapshots_task(url: str, now_ts: int) -> dict[str, int]:
    """Score every settled, unscored snapshot."""
    engine = open_engine(url)
    try:
        run = score_snapshots(engine, now_ts)
    finally:
        engine.dispose()
    return {"candidates": run.candidates, "inserted": run.inserted, "errors": run.errors}


@task(name="build-performance-report", **task_options(900))
def build_report_task(url: str, now_ts: int, since_s: float, scope: Scope, output_dir: Path) -> PerformanceReport:
    """Build the report and write its markdown and plots."""
    engine = open_engine(url)
    try:
        return build_performance_report(engine, now_ts, since_s=since_s, scope=scope, output_dir=output_dir)
    finally:
        engine.dispose()


def publish_report(report: PerformanceReport) -> list[str]:
    """Publish the report's markdown, tables and plots as artifacts; return the keys used."""
    keys = ["kbtc-model-performance"]
    create_markdown_artifact(markdown=report.markdown, key=keys[0],
                             description=f"Model vs market and ledger performance, scope {report.scope}")
    for name, frame in report.tables.items():
        key = artifact_key(f"kbtc-report-{name}")
        create_table_artifact(table=json_rows(frame), key=key, description=name.replace("_", " "))
        keys.append(key)
    for name, path in report.plot_paths.items():
        key = artifact_key(f"kbtc-plot-{name}")
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        create_image_artifact(image_url=f"data:image/png;base64,{encoded}", key=key, description=path.name)
        keys.append(key)
    return keys


@flow(name="score-and-settle", flow_run_name=run_name("score-and-settle"), timeout_seconds=1200)
def score_and_settle(health_window_seconds: float = 3_600.0) -> dict[str, Any]:
    """Score every settled snapshot, close any shadow position still open on a settled market, and publish the
    `kbtc-data-health` table (stream ages and rows, feed events and rejects over `health_window_seconds`).

    refresh-settlements closes the ledger as soon as results arrive (DESIGN.md §5); settling again here is an
    idempotent no-op then, and catches results stored another way (`kbtc refresh-settlements`, a backfill).
    """
    settings = flow_settings()
    settled = settle_ledger_task(settings.sqlalchemy_url)
    scored = score_snapshots_task(settings.sqlalchemy_url, now_ms())
    health_key = publish_health(data_health_task(settings, now_ms(), health_window_seconds))
    get_run_logger().info("settled %s positions; scored %s snapshots", settled["settled"], scored["inserted"])
    return {"settlement": settled, "scoring": scored, "artifact_keys": [health_key]}


@flow(name="model-performance-report", flow_run_name=run_name("report-{scope}"), timeout_seconds=1800)
def model_performance_report(since_seconds: float = 604_800.0, scope: Scope = "policy") -> dict[str, Any]:
    """Settle, score, build the performance report and publish it as artifacts with stable keys."""
    settings = flow_settings()
    now_ts = now_ms()
    settled = settle_ledger_task(settings.sqlalchemy_url)
    scored = score_snapshots_task(settings.sqlalchemy_url, now_ts)
    report = build_report_task(settings.sqlalchemy_url, now_ts, since_seconds, scope,
                               settings.data_dir / "reports")
    keys = publish_report(report)
    get_run_logger().info("report %s published as %d artifacts", report.markdown_path, len(keys))
    return {"settlement": settled, "scoring": scored, "markdown_path": str(report.markdown_path),
            "artifact_keys": keys}
