"""risk lists: a revision bumped with every change to their items (the engine's cache)

Revision ID: c3d5e7f9a1b2
Revises: e8a3b5c7d912
Create Date: 2026-12-07 15:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c3d5e7f9a1b2"
down_revision: str | None = "e8a3b5c7d912"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("risk_lists", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), nullable=False,
                                      server_default="0"))  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("risk_lists", schema=None) as batch_op:
        batch_op.drop_column("revision")
