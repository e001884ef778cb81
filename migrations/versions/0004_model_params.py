"""model_params: each model-parameter set stored once, referenced by edge_snapshots.params_id

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 17:00:00.000000

Upgrade: create `model_params`, add `edge_snapshots.params_id`, store every distinct `params_json` once (its id is
the first 16 hex digits of the SHA-256 of the text, as kbtc/pipeline/model_params.py computes it; `contracts` and
`model_version` extracted from it; `first_seen_ts` the earliest as-of time using it), point the snapshots at it,
and drop `edge_snapshots.params_json`. Downgrade restores `params_json` from `model_params` and drops the rest.

The columns are added and dropped with ALTER TABLE, also on SQLite (3.35+; `recreate="never"`): a batch-mode
rebuild of `edge_snapshots` would drop the old table, and with foreign keys on (kbtc's engines turn them on)
SQLite's implicit DELETE of a dropped table cascades into `snapshot_scores`. On SQLite the file keeps its size
until a `VACUUM`; the freed pages are reused by later writes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARAMS_ID_HEX_DIGITS = 16


def _contracts(payload: object) -> float:
    # The rule readers applied to params_json before this revision: `contracts` as a number, else 1.
    value = payload.get("contracts") if isinstance(payload, dict) else None
    try:
        return 1.0 if value is None else float(value)
    except (TypeError, ValueError):
        return 1.0


def _params_rows(conn: sa.Connection) -> list[dict[str, object]]:
    # DISTINCT keeps only the distinct texts (a GROUP BY would sort every 1.3 kB value first).
    texts = conn.execute(sa.text(
        "SELECT DISTINCT params_json FROM edge_snapshots WHERE params_json IS NOT NULL"
    )).scalars().all()
    rows = []
    for params_json in texts:
        try:
            payload = json.loads(params_json)
        except ValueError:
            payload = None
        version = payload.get("model_version") if isinstance(payload, dict) else None
        rows.append({
            "params_id": hashlib.sha256(params_json.encode()).hexdigest()[:PARAMS_ID_HEX_DIGITS],
            "model_version": version if isinstance(version, str) else "",  # set from the snapshots below
            "contracts": _contracts(payload),
            "params_json": params_json,
            "first_seen_ts": 0,  # set from the snapshots below
        })
    return rows


def upgrade() -> None:
    model_params = op.create_table('model_params',
    sa.Column('params_id', sa.String(length=16), nullable=False),
    sa.Column('model_version', sa.String(length=32), nullable=False),
    sa.Column('contracts', sa.Float(), nullable=False),
    sa.Column('params_json', sa.Text(), nullable=False),
    sa.Column('first_seen_ts', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('params_id', name=op.f('pk_model_params'))
    )
    with op.batch_alter_table('edge_snapshots', schema=None, recreate='never') as batch_op:
        batch_op.add_column(sa.Column('params_id', sa.String(length=16), nullable=True))

    conn = op.get_bind()
    rows = _params_rows(conn)
    if rows:
        op.bulk_insert(model_params, rows)
        # UPDATE … FROM (PostgreSQL; SQLite 3.33+): one pass over the snapshots, whatever the number of sets.
        conn.execute(sa.text(
            "UPDATE edge_snapshots SET params_id = p.params_id FROM model_params AS p "
            "WHERE p.params_json = edge_snapshots.params_json"
        ))
        seen = conn.execute(sa.text(
            "SELECT params_id, MIN(asof_ts), MIN(model_version) FROM edge_snapshots "
            "WHERE params_id IS NOT NULL GROUP BY params_id"
        )).fetchall()
        for params_id, first_seen_ts, snapshot_version in seen:
            conn.execute(sa.text(
                "UPDATE model_params SET first_seen_ts = :first, "
                "model_version = CASE WHEN model_version = '' THEN :version ELSE model_version END "
                "WHERE params_id = :id"
            ), {"first": first_seen_ts, "version": snapshot_version, "id": params_id})
    with op.batch_alter_table('edge_snapshots', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('params_json')


def downgrade() -> None:
    with op.batch_alter_table('edge_snapshots', schema=None, recreate='never') as batch_op:
        batch_op.add_column(sa.Column('params_json', sa.Text(), nullable=True))
    op.get_bind().execute(sa.text(
        "UPDATE edge_snapshots SET params_json = p.params_json FROM model_params AS p "
        "WHERE p.params_id = edge_snapshots.params_id"
    ))
    with op.batch_alter_table('edge_snapshots', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('params_id')
    op.drop_table('model_params')
