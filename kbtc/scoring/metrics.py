"""Per-forecast scores as Polars expressions: Brier, log loss, hold-to-settlement PnL, the market mid.

Each function takes column names or expressions and returns a `pl.Expr`, so the same definitions serve a
`with_columns` over 10M snapshots, a `group_by(...).agg(...)` and a test on three rows (the functime
pattern, STYLE.md). Formulas: `reference/model_math.md` §4 (scores) and §3.2 (realised PnL with fees).

Conventions: `p` is the forecast probability of YES, `y` the outcome (1 = YES, 0 = NO), prices in cents,
fees and PnL in dollars per contract.
"""

from __future__ import annotations

import polars as pl

IntoExpr = str | pl.Expr

# ε for log loss (model_math.md §4): 1e-6 exposes over-confidence; 0.01 matches Kalshi's 1 ¢ grid, below
# which the market cannot quote, so it is the fair model-vs-market comparison.
LOGLOSS_EPS_STRICT = 1e-6
LOGLOSS_EPS_GRID = 0.01


def _col(value: IntoExpr) -> pl.Expr:
    return pl.col(value) if isinstance(value, str) else value


def brier(p: IntoExpr, y: IntoExpr) -> pl.Expr:
    """Brier score of one forecast: `(p − y)²` (Brier 1950); 0 is perfect, 0.25 is a coin flip."""
    return (_col(p) - _col(y)).pow(2)


def log_loss(p: IntoExpr, y: IntoExpr, eps: float = LOGLOSS_EPS_STRICT) -> pl.Expr:
    """Log loss of one forecast with `p` clipped to `[eps, 1 − eps]`: `−[y ln p̃ + (1 − y) ln(1 − p̃)]`."""
    clipped = _col(p).clip(eps, 1.0 - eps)
    outcome = _col(y)
    return -(outcome * clipped.log() + (1 - outcome) * (1.0 - clipped).log())


def pnl_yes(y: IntoExpr, yes_ask_cents: IntoExpr, fee_dollars: IntoExpr) -> pl.Expr:
    """Dollars per contract of buying YES at the ask and holding to settlement: `y − ask/100 − fee`."""
    return _col(y) - _col(yes_ask_cents) / 100.0 - _col(fee_dollars)


def pnl_no(y: IntoExpr, no_ask_cents: IntoExpr, fee_dollars: IntoExpr) -> pl.Expr:
    """Dollars per contract of buying NO at the no-ask and holding to settlement: `(1 − y) − no_ask/100 − fee`."""
    return (1 - _col(y)) - _col(no_ask_cents) / 100.0 - _col(fee_dollars)


def pnl_side(side: IntoExpr, y: IntoExpr, price_cents: IntoExpr, fee_dollars: IntoExpr) -> pl.Expr:
    """Dollars per contract of a held `side` (`"YES"`/`"NO"`) bought at `price_cents` with `fee_dollars`."""
    win = pl.when(_col(side) == "YES").then(_col(y)).otherwise(1 - _col(y))
    return win - _col(price_cents) / 100.0 - _col(fee_dollars)


def market_mid(
    yes_bid_cents: IntoExpr = "yes_bid_cents",
    yes_ask_cents: IntoExpr = "yes_ask_cents",
    no_bid_cents: IntoExpr = "no_bid_cents",
    no_ask_cents: IntoExpr = "no_ask_cents",
) -> pl.Expr:
    """Market-implied P(YES): the YES bid/ask mid, else `1 −` the NO bid/ask mid (model_math.md §4)."""
    yes_mid = (_col(yes_bid_cents) + _col(yes_ask_cents)) / 200.0
    no_mid = 1.0 - (_col(no_bid_cents) + _col(no_ask_cents)) / 200.0
    return pl.coalesce(yes_mid, no_mid)


def no_ask_cents(no_ask: IntoExpr = "no_ask_cents", yes_bid: IntoExpr = "yes_bid_cents") -> pl.Expr:
    """The NO ask: the quoted one, else `100 − yes_bid` (Kalshi books hold bids only: buying NO at the no ask
    is selling YES at the yes bid, `reference/kalshi_api.md`)."""
    return pl.coalesce(_col(no_ask), 100.0 - _col(yes_bid))


def no_bid_cents(no_bid: IntoExpr = "no_bid_cents", yes_ask: IntoExpr = "yes_ask_cents") -> pl.Expr:
    """The NO bid: the quoted one, else `100 − yes_ask`."""
    return pl.coalesce(_col(no_bid), 100.0 - _col(yes_ask))


def outcome_from_result(result: IntoExpr = "result") -> pl.Expr:
    """The venue's `result` string as the outcome: `yes` → 1, `no` → 0, anything else (`""`, scalar) → null."""
    text = _col(result).str.strip_chars().str.to_lowercase()
    return pl.when(text == "yes").then(pl.lit(1, pl.Int32)).when(text == "no").then(pl.lit(0, pl.Int32))
