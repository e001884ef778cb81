"""`kbtc sweep`: recompute edges over history for several settings and score each against the settlements.

`--param vol.half_life=5m,15m,30m,60m` names a field of the edge settings — `vol.` (VolParams), `basis.`
(BasisParams) or `edge.`/none (EdgeParams) — and its values; a field `x` not found is tried as `x_s` with the
values read as durations (`90s`, `5m`, `1h`). Several `--param`s give their Cartesian product.

The period's inputs are read once (with the widest lookbacks of all settings); each setting then runs the same
multi-as-of path as `kbtc replay` (kbtc.pipeline.edge_history: vectorised, in bounded chunks), turns its edges
into the snapshot rows live would store, joins the settled outcomes and scores them with kbtc.scoring — the
same definitions as `kbtc score-snapshots` and the report, so a sweep number means what a live number means.
Nothing is written to the database.

Per setting: Brier and log loss of model and market (same rows), Brier skill score, ECE of both, the paired
Brier difference with its event-clustered standard error (strikes of one event share one outcome), and the PnL
of the model's fee-aware pick per contract, overall and by lead time.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine

from kbtc.db.store import read_frame
from kbtc.log import get_logger
from kbtc.pipeline.edge_history import DEFAULT_CHUNK_ROWS, asof_grid, cadence_ms, edges_over, load_history
from kbtc.pipeline.edges import EdgeSettings, snapshot_rows
from kbtc.pipeline.score_snapshots import SNAPSHOT_COLUMNS
from kbtc.scoring.calibration import calibration_error
from kbtc.scoring.inference import paired_loss_difference
from kbtc.scoring.metrics import outcome_from_result
from kbtc.scoring.snapshots import LEAD_LABELS, score_frame, summary, with_buckets

_log = get_logger(__name__)

_GROUPS = {"vol": "vol", "basis": "basis", "edge": "params"}
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class SweepParamError(ValueError):
    """A `--param` does not name a setting, or a value does not fit it."""


def parse_duration_s(text: str) -> float:
    """Seconds from `90`, `90s`, `5m`, `1.5h`, `250ms`, `1d`."""
    match = _DURATION.match(text)
    if match is None:
        raise SweepParamError(f"not a duration: {text!r} (e.g. 90s, 5m, 1h)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _coerce(current: Any, text: str, *, duration: bool) -> Any:
    if duration:
        return parse_duration_s(text)
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise SweepParamError(f"not a boolean: {text!r}")
        return text.lower() in ("true", "1", "yes")
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float) or current is None:
        return float(text)
    return text


@dataclass(frozen=True, slots=True)
class SweepSetting:
    """One point of the sweep: its label (`vol.half_life_s=300`) and the settings it runs with."""

    label: str
    settings: EdgeSettings


def _assign(settings: EdgeSettings, name: str, text: str) -> tuple[EdgeSettings, str]:
    group, _, field = name.rpartition(".")
    attribute = _GROUPS.get(group or "edge")
    if attribute is None:
        raise SweepParamError(f"unknown group {group!r} in {name!r} (use vol., basis. or edge.)")
    target = getattr(settings, attribute)
    fields = {f.name for f in dataclasses.fields(target)}
    duration = field not in fields and f"{field}_s" in fields
    field = f"{field}_s" if duration else field
    if field not in fields:
        raise SweepParamError(f"{name!r}: no such setting (fields: {', '.join(sorted(fields))})")
    try:
        value = _coerce(getattr(target, field), text, duration=duration)
        updated = dataclasses.replace(target, **{field: value})
    except (TypeError, ValueError) as exc:
        raise SweepParamError(f"{name}={text}: {exc}") from None
    return dataclasses.replace(settings, **{attribute: updated}), f"{name}={text}"


def sweep_settings(base: EdgeSettings, specs: Sequence[str]) -> list[SweepSetting]:
    """The Cartesian product of `name=v1,v2,…` specs applied to `base` (just `base` without specs)."""
    axes: list[tuple[str, list[str]]] = []
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise SweepParamError(f"expected name=value[,value…], got {spec!r}")
        axes.append((name.strip(), [v.strip() for v in values.split(",") if v.strip()]))
    out = []
    for combination in itertools.product(*(values for _, values in axes)):
        settings, labels = base, []
        for (name, _), text in zip(axes, combination, strict=True):
            settings, label = _assign(settings, name, text)
            labels.append(label)
        out.append(SweepSetting(" ".join(labels) or "baseline", settings))
    return out


def _widest(settings: Sequence[EdgeSettings]) -> EdgeSettings:
    """Settings whose read windows cover every setting's (the loader only uses them to bound its reads)."""
    first = settings[0]
    return dataclasses.replace(
        first,
        params=dataclasses.replace(first.params, quote_max_age_s=max(s.params.quote_max_age_s for s in settings)),
        vol=dataclasses.replace(first.vol, lookback_s=max(s.vol.lookback_s for s in settings)),
        basis=dataclasses.replace(
            first.basis,
            lookback_s=max(s.basis.lookback_s for s in settings),
            index_lookback_s=max(s.basis.index_lookback_s for s in settings),
        ),
        book_max_age_s=None,
    )


def settled_outcomes(engine: Engine) -> pl.DataFrame:
    """market_ticker, outcome (1 YES / 0 NO), settled_ts of every market with a yes/no result."""
    sql = """SELECT market_ticker, result, COALESCE(settled_ts, determined_ts, settlement_ts) AS settled_ts
             FROM markets WHERE LOWER(result) IN ('yes', 'no')"""
    frame = read_frame(engine, sql, schema={"market_ticker": pl.String, "result": pl.String, "settled_ts": pl.Int64})
    return frame.select("market_ticker", outcome_from_result("result").alias("outcome"), "settled_ts")


@dataclass(frozen=True, slots=True)
class SweepResult:
    """The comparison (one row per setting), the same by lead time, and each setting's scored snapshots."""

    comparison: pl.DataFrame
    by_lead: pl.DataFrame
    scored: dict[str, pl.DataFrame]


def score_setting(
    inputs: Any, asofs: Sequence[int], setting: SweepSetting, outcomes: pl.DataFrame, chunk_rows: int
) -> pl.DataFrame:
    """The scored snapshots of one setting over the period (streamed chunk by chunk)."""
    settings = dataclasses.replace(setting.settings, book_max_age_s=None)
    params = settings.param_set()
    parts = []
    for batch in edges_over(inputs, asofs, settings, chunk_rows=chunk_rows):
        rows = snapshot_rows(batch.edges, params.params_id).select(list(SNAPSHOT_COLUMNS)).cast(SNAPSHOT_COLUMNS)  # type: ignore[arg-type]
        parts.append(rows.join(outcomes, on="market_ticker", how="inner"))
    if not parts:
        return pl.DataFrame()
    # The order size the live scoring step would join from `model_params`. Sorted: a join's output order varies
    # from run to run; the scored rows come in (as-of, market) order.
    snapshots = (pl.concat(parts).with_columns(pl.lit(params.contracts).alias("contracts"))
                 .sort("asof_ts", "market_ticker"))
    return with_buckets(score_frame(snapshots)).collect()


def _setting_row(label: str, scored: pl.DataFrame) -> dict[str, Any]:
    overall = summary(scored).row(0, named=True)
    ece_model = calibration_error(scored.filter(pl.col("p_model").is_not_null()), "p_model", "outcome")
    ece_market = calibration_error(scored.filter(pl.col("p_mkt").is_not_null()), "p_mkt", "outcome")
    diff = paired_loss_difference(scored, "brier_model", "brier_market", "event_ticker")
    first = diff.row(0, named=True) if diff.height else {"mean": None, "se": None, "t": None}
    return {
        "setting": label,
        "snapshots": overall["snapshots"],
        "events": overall["events"],
        "brier_model": overall["brier_model"],
        "brier_market": overall["brier_market"],
        "bss": overall["bss"],
        "logloss_model": overall["logloss_model"],
        "logloss_market": overall["logloss_market"],
        "ece_model": ece_model["ece"][0] if ece_model.height else None,
        "ece_market": ece_market["ece"][0] if ece_market.height else None,
        "brier_diff": first["mean"],
        "brier_diff_se": first["se"],
        "brier_diff_t": first["t"],
        "model_picks": overall["model_picks"],
        "pnl_model_mean": overall["pnl_model_mean"],
        "pnl_model_total": overall["pnl_model_total"],
    }


def run_sweep(
    engine: Engine,
    settings: Sequence[SweepSetting],
    start_ts: int,
    end_ts: int,
    cadence_s: float,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> SweepResult:
    """Score every setting over the as-of grid of [start_ts, end_ts]; read the database once."""
    asofs = asof_grid(start_ts, end_ts, cadence_s)
    if not settings or not asofs:
        raise ValueError("nothing to sweep: no settings or an empty period")
    inputs = load_history(engine, asofs[0], asofs[-1], _widest([s.settings for s in settings]),
                          asof_step_ms=cadence_ms(cadence_s))
    outcomes = settled_outcomes(engine)
    rows, leads, scored = [], [], {}
    for setting in settings:
        frame = score_setting(inputs, asofs, setting, outcomes, chunk_rows)
        scored[setting.label] = frame
        if frame.height == 0:
            rows.append({"setting": setting.label, "snapshots": 0})
            continue
        rows.append(_setting_row(setting.label, frame))
        lead = summary(frame, ["lead_bucket"]).select(
            "lead_bucket", "paired", "brier_model", "brier_market", "model_picks", "pnl_model_mean"
        )
        leads.append(lead.with_columns(pl.lit(setting.label).alias("setting")))
    comparison = pl.DataFrame(rows, infer_schema_length=None)
    order = pl.Enum(LEAD_LABELS)
    by_lead = (
        pl.concat(leads).filter(pl.col("lead_bucket").is_not_null())
        .with_columns(pl.col("lead_bucket").cast(order))
        .sort("setting", "lead_bucket", maintain_order=True)
        .with_columns(pl.col("lead_bucket").cast(pl.String))
        .select("setting", pl.exclude("setting"))
        if leads else pl.DataFrame()
    )
    _log.info("sweep_done", settings=[s.label for s in settings], asofs=len(asofs), start_ts=start_ts, end_ts=end_ts,
              snapshots={label: frame.height for label, frame in scored.items()})
    return SweepResult(comparison, by_lead, scored)


def sweep_plot(result: SweepResult, path: Path) -> Path:
    """Brier of each setting beside the market's, and the model pick's PnL per contract by lead time."""
    from kbtc.pipeline.report_plots import _pyplot

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.0, 4.6))
    table = result.comparison.filter(pl.col("snapshots") > 0)
    labels = table["setting"].to_list() if table.height else []
    positions = list(range(len(labels)))
    if labels:
        left.bar([p - 0.2 for p in positions], table["brier_model"].to_list(), 0.4, label="model", color="tab:blue")
        left.bar([p + 0.2 for p in positions], table["brier_market"].to_list(), 0.4, label="market mid",
                 color="tab:orange")
        left.set_xticks(positions, labels, rotation=20, ha="right", fontsize=8)
        left.legend(loc="best")
    left.set(ylabel="mean Brier (lower is better)", title="Brier by setting (same snapshots)")
    if result.by_lead.height:
        buckets = [b for b in LEAD_LABELS if b in set(result.by_lead["lead_bucket"].to_list())]
        width = 0.8 / max(len(labels), 1)
        for i, label in enumerate(labels):
            mine = result.by_lead.filter(pl.col("setting") == label)
            rows = {r["lead_bucket"]: r for r in mine.iter_rows(named=True)}
            values = [(rows[b]["pnl_model_mean"] if b in rows else None) or 0.0 for b in buckets]
            right.bar([k + (i - (len(labels) - 1) / 2) * width for k in range(len(buckets))], values, width,
                      label=label)
        right.set_xticks(list(range(len(buckets))), buckets)
        right.axhline(0, color="0.5", linewidth=0.8)
        right.legend(loc="best", fontsize=7)
    right.set(xlabel="time to close", ylabel="$ per contract (fees included)", title="Model-pick PnL by lead time")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
