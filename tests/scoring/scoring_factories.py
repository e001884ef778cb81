"""Rows in the shapes of kbtc/db/schema.py for scoring and ledger tests (built directly, no edge engine)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine

from kbtc.db.store import upsert
from kbtc.pipeline.model_params import ParamSet

NOW = 1_795_000_000_000  # 2026-11-19 (epoch ms)
MINUTE = 60_000
HOUR = 3_600_000


def market(ticker: str, *, result: str | None = None, event: str | None = None, series: str = "KXBTCD",
           close_ts: int = NOW + HOUR, settled_ts: int | None = None, **extra: Any) -> dict[str, Any]:
    """A `markets` row; `result` 'yes'/'no' settles it."""
    return {
        "market_ticker": ticker,
        "event_ticker": event or ticker.rsplit("-", 1)[0],
        "series_ticker": series,
        "strike_type": "greater",
        "floor_strike": 95_000.0,
        "close_ts": close_ts,
        "status": "finalized" if result else "active",
        "result": result,
        "settled_ts": settled_ts if settled_ts is not None else (close_ts + 5 * MINUTE if result else None),
        "first_seen_ts": NOW - 10 * HOUR,
        "updated_ts": NOW,
        **extra,
    }


def snapshot(ticker: str, asof_ts: int = NOW, *, p_model: float | None = 0.6, yes_bid: float | None = 50.0,
             yes_ask: float | None = 52.0, event: str | None = None, series: str = "KXBTCD",
             close_ts: int = NOW + HOUR, fee_yes: float | None = 0.02, fee_no: float | None = 0.02,
             contracts: float = 1.0, params: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """An `edge_snapshots` row as the readers see it, with `params_json` and `contracts` of its model params (an
    order of `contracts`, plus `params`); NO prices mirror the YES book (no_bid = 100 − yes_ask, no_ask = 100 − yes_bid).
    `store_snapshots` writes such rows."""
    no_bid = None if yes_ask is None else 100.0 - yes_ask
    no_ask = None if yes_bid is None else 100.0 - yes_bid
    row: dict[str, Any] = {
        "asof_ts": asof_ts,
        "market_ticker": ticker,
        "event_ticker": event or ticker.rsplit("-", 1)[0],
        "series_ticker": series,
        "strike_type": "greater",
        "floor_strike": 95_000.0,
        "close_ts": close_ts,
        "settlement_ts": close_ts + 5 * MINUTE,
        "horizon_s": (close_ts - asof_ts) / 1000.0,
        "spot_usd": 95_000.0,
        "spot_ts": asof_ts - 1_000,
        "spot_age_s": 1.0,
        "sigma_annual": 0.5,
        "sigma_status": "ok",
        "p_model": p_model,
        "p_model_raw": p_model,
        "p_market": None if yes_bid is None or yes_ask is None else (yes_bid + yes_ask) / 200.0,
        "quote_ts": asof_ts - 2_000,
        "quote_age_s": 2.0,
        "yes_bid_cents": yes_bid,
        "yes_ask_cents": yes_ask,
        "no_bid_cents": no_bid,
        "no_ask_cents": no_ask,
        "fee_type": "quadratic",
        "fee_multiplier": 1.0,
        "fee_yes_dollars": fee_yes,
        "fee_no_dollars": fee_no,
        "ev_yes_dollars": None if p_model is None or yes_ask is None or fee_yes is None
        else p_model - yes_ask / 100.0 - fee_yes,
        "ev_no_dollars": None if p_model is None or no_ask is None or fee_no is None
        else (1 - p_model) - no_ask / 100.0 - fee_no,
        "kelly_yes": None,
        "kelly_no": None,
        "model_version": "gbm-avg-1",
        "params_json": json.dumps({"contracts": contracts, "model_version": "gbm-avg-1", **(params or {})},
                                  sort_keys=True, separators=(",", ":")),
        "contracts": contracts,
    }
    row.update(extra)
    return row


def store_snapshots(engine: Engine, rows: Sequence[dict[str, Any]]) -> None:
    """Write `snapshot` rows as the edge writer does: each params set once in `model_params`, the snapshots
    referring to it by `params_id`."""
    sets: dict[str, dict[str, Any]] = {}
    stored = []
    for row in rows:
        params = ParamSet.from_json(row["params_json"])
        assert params.contracts == row["contracts"], "the row's contracts must be its params'"
        first = sets.setdefault(params.params_id, params.row(row["asof_ts"]))
        first["first_seen_ts"] = min(first["first_seen_ts"], row["asof_ts"])
        stored.append({**{k: v for k, v in row.items() if k not in ("params_json", "contracts")},
                       "params_id": params.params_id})
    upsert(engine, "model_params", list(sets.values()), on_conflict="ignore")
    upsert(engine, "edge_snapshots", stored)
