"""refund attention: when a long-pending refund was flagged for an operator

Revision ID: 3d9b6f0e2a41
Revises: 8c4e1f2a7b90
Create Date: 2026-11-26 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paymux.kit.db

revision: str = "3d9b6f0e2a41"
down_revision: str | None = "8c4e1f2a7b90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(sa.Column("attention_at", paymux.kit.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.drop_column("attention_at")
