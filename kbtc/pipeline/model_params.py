"""Model-parameter sets: stored once in `model_params`, referenced from each edge snapshot by `params_id`.

The id is the first 16 hex digits (64 bits) of the SHA-256 of the params JSON text, which
`EdgeSettings.params_json` writes canonically (sorted keys, no whitespace): the same settings get the same id in
every database, process and replay, and two settings two ids (a collision among a million distinct sets has odds
of about 3e-8). Sixteen characters a snapshot row instead of the ~1.3 kB JSON.

`store_params` writes the row (insert-or-ignore on the id) inside the transaction that writes the snapshots, so
no committed snapshot refers to a missing row. Ids already stored are remembered per engine: a live loop inserts
its row on the first tick only, and a new database (a new engine) gets its row on its first write. Rows are never
deleted; a database emptied or replaced under a running engine (e.g. downgraded and upgraded again) gets its
params rows back only from a new engine — restart the process.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine

from kbtc.db.schema import ModelParams
from kbtc.db.store import upsert_in

PARAMS_ID_HEX_DIGITS = 16
# How readers get a snapshot's (`s`) params (`p`): a join on the id, and the order size its fees and EVs are
# totals for — 1 for a snapshot without params (as a params set without `contracts`).
PARAMS_JOIN_SQL = "LEFT JOIN model_params p ON p.params_id = s.params_id"
CONTRACTS_SQL = "COALESCE(p.contracts, 1.0)"
_STORED: WeakKeyDictionary[Engine, set[str]] = WeakKeyDictionary()


def params_id_of(params_json: str) -> str:
    """The id of a params JSON text: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(params_json.encode()).hexdigest()[:PARAMS_ID_HEX_DIGITS]


def contracts_of(payload: dict[str, Any]) -> float:
    """The order size a params set prices (its `contracts`), 1 when absent or not a number."""
    value = payload.get("contracts")
    try:
        return 1.0 if value is None else float(value)
    except (TypeError, ValueError):
        return 1.0


@dataclass(frozen=True, slots=True)
class ParamSet:
    """One params JSON text with its id, model version and order size."""

    params_id: str
    params_json: str
    model_version: str
    contracts: float

    @classmethod
    def from_json(cls, params_json: str) -> ParamSet:
        """The set of a params JSON text (an object with a `model_version`)."""
        payload = json.loads(params_json)
        version = payload.get("model_version") if isinstance(payload, dict) else None
        if not isinstance(version, str):
            raise ValueError("model params JSON must be an object with a model_version")
        return cls(params_id_of(params_json), params_json, version, contracts_of(payload))

    def row(self, first_seen_ts: int) -> dict[str, Any]:
        """The `model_params` row."""
        return {"params_id": self.params_id, "model_version": self.model_version, "contracts": self.contracts,
                "params_json": self.params_json, "first_seen_ts": first_seen_ts}


def is_stored(engine: Engine, params: ParamSet) -> bool:
    """True when this process already stored `params` through `engine`."""
    return params.params_id in _STORED.get(engine, ())


def store_params(conn: Connection, params: ParamSet, first_seen_ts: int) -> None:
    """Insert the params row; nothing when a row has its id (call inside the snapshots' write transaction)."""
    upsert_in(conn, ModelParams, [params.row(first_seen_ts)], on_conflict="ignore")


def remember_stored(engine: Engine, params: ParamSet) -> None:
    """Note that `params` is in the database behind `engine` (after the transaction that wrote it committed)."""
    _STORED.setdefault(engine, set()).add(params.params_id)
