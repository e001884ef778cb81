"""index_prices: Kalshi's 15-minute window average (last_60s_windowed_average_15min)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('index_prices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('avg_15min_usd', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('avg_15min_count', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('index_prices', schema=None) as batch_op:
        batch_op.drop_column('avg_15min_count')
        batch_op.drop_column('avg_15min_usd')
