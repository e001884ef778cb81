"""PNG plots of the performance report (matplotlib, Agg backend: no display needed).

- reliability diagram: observed frequency against mean forecast per equal-mass bin, model and market, with
  95 % Wilson intervals and the bin counts written next to the points;
- cumulative PnL of the ledger in settlement order, with its drawdown;
- Brier score by lead time, model beside market.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def reliability_plot(model: pl.DataFrame, market: pl.DataFrame, path: Path) -> Path:
    """Reliability diagram of the model and the market (tables from `reliability_table`)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    for table, label, colour, dx in ((model, "model", "tab:blue", -0.004), (market, "market mid", "tab:orange", 0.004)):
        if table.height == 0:
            continue
        x = table["p_mean"].to_numpy() + dx
        y = table["y_rate"].to_numpy()
        # Clipped at 0: at a rate of exactly 0 or 1 the Wilson bound equals the rate up to rounding.
        errors = [np.maximum(y - table["y_low"].to_numpy(), 0.0), np.maximum(table["y_high"].to_numpy() - y, 0.0)]
        ax.errorbar(x, y, yerr=errors, fmt="o-", color=colour, capsize=3, markersize=4, label=label)
        for xi, yi, n in zip(x, y, table["n"].to_list(), strict=True):
            ax.annotate(str(n), (xi, yi), textcoords="offset points", xytext=(4, -10), fontsize=7, color=colour)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean forecast P(YES) in bin", ylabel="observed YES frequency",
           title="Reliability (equal-mass bins, 95 % Wilson intervals, n per bin)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cumulative_pnl_plot(curve: pl.DataFrame, path: Path) -> Path:
    """Cumulative ledger PnL ($) and drawdown against settlement time (`cumulative_pnl` output)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    if curve.height:
        when = curve["settled_ts"].cast(pl.Datetime("ms")).to_list()
        ax.step(when, curve["cum_pnl_dollars"].to_list(), where="post", color="tab:blue", label="cumulative PnL")
        ax.fill_between(when, curve["drawdown_dollars"].to_list(), 0, step="post", color="tab:red", alpha=0.25,
                        label="drawdown")
        fig.autofmt_xdate()
        ax.legend(loc="best")
    else:
        ax.text(0.5, 0.5, "no settled ledger rows in the window", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.set(xlabel="settlement time (UTC)", ylabel="$ per contract held", title="Ledger cumulative PnL (fees included)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def brier_by_lead_plot(by_lead: pl.DataFrame, order: list[str], path: Path) -> Path:
    """Mean Brier per lead-time bucket, model beside market (`summary(..., ["lead_bucket"])` output)."""
    plt = _pyplot()
    table = by_lead.filter(pl.col("lead_bucket").is_not_null())
    present = [bucket for bucket in order if bucket in set(table["lead_bucket"].to_list())]
    rows = {row["lead_bucket"]: row for row in table.iter_rows(named=True)}
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    positions = list(range(len(present)))
    width = 0.38
    model = [rows[b]["brier_model"] or 0.0 for b in present]
    market = [rows[b]["brier_market"] or 0.0 for b in present]
    ax.bar([p - width / 2 for p in positions], model, width, label="model", color="tab:blue")
    ax.bar([p + width / 2 for p in positions], market, width, label="market mid", color="tab:orange")
    for p, bucket in zip(positions, present, strict=True):
        ax.annotate(f"n={rows[bucket]['paired']}", (p, max(rows[bucket]["brier_model"] or 0.0,
                                                            rows[bucket]["brier_market"] or 0.0)),
                    textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
    ax.set_xticks(positions, present)
    ax.set(xlabel="time to close", ylabel="mean Brier score (lower is better)", title="Brier by lead time")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
