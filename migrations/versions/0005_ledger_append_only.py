"""edges, edge_snapshots: drop the (market_ticker, asof_ts) indexes; both tables grow in their key order

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 08:40:00.000000

Every edge tick appends one `edges` row per evaluated market and one `edge_snapshots` row per selected market.
The primary keys (asof_ts, market_ticker) grow at their end, but an index led by the market takes one entry in
each market's run every tick: one dirty page per market per tick, written to the WAL and checkpointed. Measured
on SQLite after 360 earlier ticks (benchmarks/edges.py --history-ticks 360, docs/EDGE_VALIDATION.md §8): a
10k-market tick 500 → 115 ms, a 500-market tick 71 → 40 ms (means of 30 ticks), and without them the cost no
longer grows with the history held. Nothing in kbtc reads either table by market (scoring walks the snapshots
in key order, the opportunity loop and the report by as-of time). Downgrade recreates both indexes.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (("edges", "ix_edges_market_ticker_asof_ts"), ("edge_snapshots", "ix_edge_snapshots_market_ticker_asof_ts"))


def upgrade() -> None:
    for table, name in _INDEXES:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for table, name in _INDEXES:
        op.create_index(name, table, ['market_ticker', 'asof_ts'], unique=False)
