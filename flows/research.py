"""Research flow: the parameter sweep (`kbtc sweep`) with its comparison published as artifacts.

Not scheduled (no deployment in prefect.yaml): a sweep is a question a person asks of history, run on demand
(`prefect deployment run` after adding one, or call the flow). Artifacts use fixed keys, so each run adds a
version to the same artifact:

- `kbtc-sweep`                  markdown: the period, the settings and the comparison table
- `kbtc-sweep-comparison`       table: one row per setting (Brier, log loss, ECE, clustered Brier difference, PnL)
- `kbtc-sweep-by-lead-time`     table: the same by lead-time bucket
- `kbtc-plot-sweep`             the comparison plot (PNG as a `data:` URL)
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

from flows.artifacts import json_rows
from flows.common import flow_settings, task_options
from kbtc.config import Settings
from kbtc.db.migrate import open_engine
from kbtc.pipeline.edges import edge_settings_from
from kbtc.pipeline.sweep import SweepResult, run_sweep, sweep_plot, sweep_settings

ARTIFACT_KEYS = ("kbtc-sweep", "kbtc-sweep-comparison", "kbtc-sweep-by-lead-time", "kbtc-plot-sweep")


@task(name="sweep", **task_options(7200))
def sweep_task(settings: Settings, params: list[str], start_ts: int, end_ts: int, cadence_s: float) -> SweepResult:
    """Score every setting over the period (reads the database once; writes nothing)."""
    base = edge_settings_from(settings)
    engine = open_engine(settings.sqlalchemy_url)
    try:
        return run_sweep(engine, sweep_settings(base, params), start_ts, end_ts, cadence_s)
    finally:
        engine.dispose()


def publish_sweep(result: SweepResult, plot_path: Path, title: str) -> list[str]:
    """Publish the comparison as markdown, two tables and the plot; return the keys used."""
    markdown_key, comparison_key, lead_key, plot_key = ARTIFACT_KEYS
    header = "| " + " | ".join(result.comparison.columns) + " |\n|" + "---|" * result.comparison.width + "\n"
    lines = "".join(
        "| " + " | ".join("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |\n"
        for row in result.comparison.iter_rows()
    )
    create_markdown_artifact(markdown=f"# {title}\n\n{header}{lines}", key=markdown_key,
                             description="parameter sweep")
    create_table_artifact(table=json_rows(result.comparison), key=comparison_key, description="one row per setting")
    create_table_artifact(table=json_rows(result.by_lead), key=lead_key, description="per setting and lead time")
    encoded = base64.b64encode(sweep_plot(result, plot_path).read_bytes()).decode("ascii")
    create_image_artifact(image_url=f"data:image/png;base64,{encoded}", key=plot_key, description=plot_path.name)
    return list(ARTIFACT_KEYS)


@flow(name="parameter-sweep", flow_run_name="sweep-{start_ts}-{end_ts}", timeout_seconds=7500)
def parameter_sweep(params: list[str], start_ts: int, end_ts: int, cadence_s: float = 60.0) -> dict[str, Any]:
    """Compare settings (`vol.half_life=5m,15m`, …) over [start_ts, end_ts] (epoch ms) and publish the result."""
    settings = flow_settings()
    result = sweep_task(settings, params, start_ts, end_ts, cadence_s)
    output = settings.data_dir / "reports"
    output.mkdir(parents=True, exist_ok=True)
    keys = publish_sweep(result, output / f"sweep-{start_ts}-{end_ts}.png",
                         f"Sweep {', '.join(params)} over {start_ts}–{end_ts} every {cadence_s:g} s")
    get_run_logger().info("sweep of %d settings published as %d artifacts", result.comparison.height, len(keys))
    return {"settings": result.comparison["setting"].to_list(), "artifact_keys": keys,
            "comparison": json_rows(result.comparison)}
