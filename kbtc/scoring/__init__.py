"""Pure scoring: per-forecast metrics as Polars expressions, calibration, clustered inference, the ledger rules.

No I/O here: frames in, frames out (DESIGN.md §2). The database steps live in kbtc/pipeline/
(score_snapshots, opportunities, settle_ledger, report); methods and formulas: docs/SCORING.md.

- metrics      Brier, log loss, PnL of YES/NO with fees, market mid, outcome — each a `pl.Expr`
- snapshots    per-snapshot scores (model and market side by side), buckets, grouped summaries
- calibration  Murphy decomposition with within-bin terms, ECE/MCE, reliability table (equal-mass bins)
- inference    cluster-robust mean and SE, paired model-vs-market loss difference, Brier skill score
- ledger       TAKE/PASS decisions with reason codes, shadow positions from TAKEs
- settlement   realised PnL of positions held to settlement
- performance  ledger PnL, hit rate, clustered SE, cumulative PnL and drawdown
"""

from kbtc.scoring.calibration import calibration_error, murphy_decomposition, reliability_table
from kbtc.scoring.inference import brier_skill_score, clustered_mean, paired_loss_difference
from kbtc.scoring.ledger import LedgerParams, decide, positions_from_takes
from kbtc.scoring.metrics import brier, log_loss, market_mid, pnl_no, pnl_side, pnl_yes
from kbtc.scoring.settlement import settle_positions
from kbtc.scoring.snapshots import score_frame, summary

__all__ = [
    "LedgerParams",
    "brier",
    "brier_skill_score",
    "calibration_error",
    "clustered_mean",
    "decide",
    "log_loss",
    "market_mid",
    "murphy_decomposition",
    "paired_loss_difference",
    "pnl_no",
    "pnl_side",
    "pnl_yes",
    "positions_from_takes",
    "reliability_table",
    "score_frame",
    "settle_positions",
    "summary",
]
