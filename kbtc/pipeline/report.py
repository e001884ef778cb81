"""The model performance report: does the model have an edge over the market, and did the ledger make money?

`build_performance_report` reads the window from the database and returns every table (Polars frames),
the markdown text and, with an output directory, the markdown file and PNG plots — so the CLI prints the
tables, and a Prefect flow publishes the same tables, markdown and images as artifacts. Nothing here is
stored: every number is recomputed from `snapshot_scores`, `edge_snapshots`, `opportunities`, `markets`,
`feed_events` and `rejects`, so the report is reproducible from the database alone.

Sections (methods and meaning of every number: docs/SCORING.md):
1. snapshot scores, model vs market: overall and by series, lead time, moneyness and day;
2. calibration: Murphy decomposition, ECE/MCE, reliability tables;
3. model vs market: paired loss differences clustered by event, with standard errors, and the
   forecast-encompassing regression (does the model add information beyond the market price?);
4. the ledger (scope `policy`: TAKEs; `all`: every recorded decision): count, hit rate, mean PnL with its
   clustered SE, total, drawdown, by day, decisions by reason;
5. data health: spot/quote/snapshot ages, feed gaps and rejects recorded in the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import polars as pl
from sqlalchemy import Engine

from kbtc.db.store import read_frame
from kbtc.pipeline.health import data_health
from kbtc.pipeline.score_snapshots import scored_snapshots
from kbtc.scoring.calibration import DEFAULT_BINS, calibration_error, murphy_decomposition, reliability_table
from kbtc.scoring.inference import encompassing_regression, paired_loss_difference
from kbtc.scoring.metrics import outcome_from_result
from kbtc.scoring.performance import cumulative_pnl, decision_counts, ledger_by_day, ledger_summary, price_ledger
from kbtc.scoring.snapshots import LEAD_LABELS, MONEYNESS_LABELS, summary

Scope = Literal["policy", "all"]
PAIRED_LOSSES = (  # (name, model column, market column)
    ("brier", "brier_model", "brier_market"),
    ("logloss_eps_1e-6", "logloss_model", "logloss_market"),
    ("logloss_eps_0.01", "logloss_model_grid", "logloss_market_grid"),
)

_LEDGER_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "eval_ts": pl.Int64, "market_ticker": pl.String, "side": pl.String, "decision": pl.String,
    "reasons": pl.String, "event_ticker": pl.String, "series_ticker": pl.String, "p_model": pl.Float64,
    "p_market": pl.Float64, "price_cents": pl.Float64, "fee_dollars": pl.Float64, "contracts": pl.Float64,
    "result": pl.String,
    "settled_ts": pl.Int64,
}


@dataclass(frozen=True, slots=True)
class PerformanceReport:
    """The report's tables (in display order), its markdown, and the files written (if any)."""

    now_ts: int
    since_ts: int
    scope: Scope
    tables: dict[str, pl.DataFrame]
    markdown: str
    markdown_path: Path | None = None
    plot_paths: dict[str, Path] = field(default_factory=dict)


def _ordered(frame: pl.DataFrame, column: str, order: list[str]) -> pl.DataFrame:
    rank = {label: i for i, label in enumerate(order)}
    return frame.sort(pl.col(column).replace_strict(rank, default=len(order), return_dtype=pl.Int32))


def _ledger_rows(engine: Engine, since_ts: int, now_ts: int, scope: Scope) -> pl.DataFrame:
    policy = "AND o.decision = 'TAKE'" if scope == "policy" else ""
    sql = f"""
        SELECT o.eval_ts, o.market_ticker, o.side, o.decision, o.reasons, o.event_ticker, o.series_ticker,
               o.p_model, o.p_market, o.price_cents, o.fee_dollars, COALESCE(o.contracts, 1.0) AS contracts,
               mk.result AS result, COALESCE(mk.settled_ts, mk.determined_ts) AS settled_ts
        FROM opportunities o LEFT JOIN markets mk ON mk.market_ticker = o.market_ticker
        WHERE o.eval_ts >= :since AND o.eval_ts <= :now {policy}
    """  # noqa: S608 — `policy` is one of two constants
    frame = read_frame(engine, sql, {"since": since_ts, "now": now_ts}, schema=_LEDGER_SCHEMA)
    return frame.cast(_LEDGER_SCHEMA).with_columns(outcome_from_result("result").alias("outcome"))  # type: ignore[arg-type]


def _calibration_tables(scored: pl.DataFrame, n_bins: int) -> dict[str, pl.DataFrame]:
    paired = scored.filter(pl.col("p_model").is_not_null() & pl.col("p_mkt").is_not_null())
    forecasts = (("model", "p_model"), ("market", "p_mkt"))
    murphy = pl.concat([murphy_decomposition(paired, col, "outcome", n_bins=n_bins)
                        .select(pl.lit(name).alias("forecast"), pl.all()) for name, col in forecasts])
    ece = pl.concat([calibration_error(paired, col, "outcome", n_bins=n_bins)
                     .select(pl.lit(name).alias("forecast"), pl.all()) for name, col in forecasts])
    return {
        "murphy_decomposition": murphy,
        "calibration_error": ece,
        "reliability_model": reliability_table(paired, "p_model", "outcome", n_bins=n_bins),
        "reliability_market": reliability_table(paired, "p_mkt", "outcome", n_bins=n_bins),
    }


def _model_vs_market(scored: pl.DataFrame) -> pl.DataFrame:
    return pl.concat([
        paired_loss_difference(scored, model, market, "event_ticker").select(pl.lit(name).alias("loss"), pl.all())
        for name, model, market in PAIRED_LOSSES
    ])


def _health_tables(engine: Engine, now_ts: int, window_s: float, scored_window: pl.DataFrame
                   ) -> dict[str, pl.DataFrame]:
    health = data_health(engine, now_ts, window_s)
    ages = read_frame(
        engine,
        "SELECT spot_age_s, quote_age_s FROM edge_snapshots WHERE asof_ts >= :since AND asof_ts <= :now",
        {"since": health.since_ts, "now": now_ts},
        schema={"spot_age_s": pl.Float64, "quote_age_s": pl.Float64},
    ).cast({"spot_age_s": pl.Float64, "quote_age_s": pl.Float64})
    snapshot_ages = ages.unpivot(variable_name="age", value_name="seconds").group_by("age").agg(
        pl.col("seconds").count().alias("snapshots"),
        pl.col("seconds").mean().alias("mean_s"),
        pl.col("seconds").quantile(0.95).alias("p95_s"),
        pl.col("seconds").max().alias("max_s"),
    ).sort("age")
    coverage = pl.DataFrame({
        "snapshots_in_window": [ages.height],
        "scored_with_outcome": [scored_window.height],
        "scored_with_errors": [int(scored_window["error"].is_not_null().sum()) if scored_window.height else 0],
    })
    return {
        "freshness": health.freshness.drop("latest_ts"),
        "snapshot_ages": snapshot_ages,
        "scoring_coverage": coverage,
        "feed_events": health.feed_events,
        "rejects": health.rejects,
    }


def build_performance_report(
    engine: Engine,
    now_ts: int,
    *,
    since_s: float = 604_800.0,
    scope: Scope = "policy",
    output_dir: Path | None = None,
    n_bins: int = DEFAULT_BINS,
) -> PerformanceReport:
    """Build the report for snapshots and decisions in `[now − since_s, now]`; write files to `output_dir`."""
    since_ts = now_ts - int(since_s * 1000)
    scored = scored_snapshots(engine, since_ts, now_ts)
    tables: dict[str, pl.DataFrame] = {
        "snapshot_scores": summary(scored),
        "by_series": summary(scored, ["series_ticker"]),
        "by_lead_time": _ordered(summary(scored, ["lead_bucket"]), "lead_bucket", LEAD_LABELS),
        "by_moneyness": _ordered(summary(scored, ["moneyness_bucket"]), "moneyness_bucket", MONEYNESS_LABELS),
        "by_day": summary(scored, ["day"]),
        **_calibration_tables(scored, n_bins),
        "model_vs_market": _model_vs_market(scored),
        "encompassing": encompassing_regression(scored, "p_model", "p_mkt", "outcome", "event_ticker"),
    }
    priced = price_ledger(_ledger_rows(engine, since_ts, now_ts, scope))
    curve = cumulative_pnl(priced)
    tables |= {
        "ledger": ledger_summary(priced),
        "ledger_by_day": ledger_by_day(priced),
        "ledger_decisions": decision_counts(priced),
        **_health_tables(engine, now_ts, since_s, scored),
    }
    markdown = render_markdown(tables, now_ts=now_ts, since_ts=since_ts, scope=scope)
    report = PerformanceReport(now_ts, since_ts, scope, tables, markdown)
    if output_dir is None:
        return report
    from kbtc.pipeline.report_plots import brier_by_lead_plot, cumulative_pnl_plot, reliability_plot

    output_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "reliability": reliability_plot(tables["reliability_model"], tables["reliability_market"],
                                        output_dir / "reliability.png"),
        "cumulative_pnl": cumulative_pnl_plot(curve, output_dir / "cumulative_pnl.png"),
        "brier_by_lead_time": brier_by_lead_plot(tables["by_lead_time"], LEAD_LABELS,
                                                 output_dir / "brier_by_lead_time.png"),
    }
    images = "\n".join(f"![{name}]({path.name})" for name, path in plots.items())
    markdown_path = output_dir / "model_performance.md"
    markdown_path.write_text(f"{markdown}\n## Plots\n\n{images}\n", encoding="utf-8")
    return PerformanceReport(now_ts, since_ts, scope, tables, markdown_path.read_text(encoding="utf-8"),
                             markdown_path, plots)


def format_value(value: object) -> str:
    """A cell for display: floats to 4 significant digits, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def frame_to_markdown(frame: pl.DataFrame) -> str:
    """A GitHub-flavoured markdown table of a frame."""
    if frame.height == 0:
        return "_(no rows)_"
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(format_value(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *body])


_SECTIONS = (
    ("Snapshot scores: model vs market", ("snapshot_scores", "by_series", "by_lead_time", "by_moneyness", "by_day")),
    ("Calibration", ("murphy_decomposition", "calibration_error", "reliability_model", "reliability_market")),
    ("Model vs market, paired and clustered by event (d = model − market; negative: model better)",
     ("model_vs_market", "encompassing")),
    ("Ledger", ("ledger", "ledger_by_day", "ledger_decisions")),
    ("Data health", ("freshness", "snapshot_ages", "scoring_coverage", "feed_events", "rejects")),
)


def render_markdown(tables: dict[str, pl.DataFrame], *, now_ts: int, since_ts: int, scope: Scope) -> str:
    """The report as markdown: a header naming the window and scope, then one table per section entry."""
    def stamp(ts: int) -> str:
        return datetime.fromtimestamp(ts / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    lines = [
        "# kbtc model performance",
        "",
        f"Window {stamp(since_ts)} → {stamp(now_ts)}; ledger scope `{scope}`. "
        "Log loss at ε = 1e-6 (`logloss_*`) and ε = 0.01 (`*_grid`); PnL in $ per contract, taker fee included. "
        "Methods: docs/SCORING.md.",
    ]
    for title, names in _SECTIONS:
        lines += ["", f"## {title}"]
        for name in names:
            lines += ["", f"### {name}", "", frame_to_markdown(tables[name])]
    return "\n".join(lines) + "\n"
