"""split part result: per-receiver outcome of a channel split (partial splits)

Revision ID: 5a1e7c2d9b31
Revises: 214dc1f8fcc2
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5a1e7c2d9b31"
down_revision: str | None = "214dc1f8fcc2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("split_parts") as batch:
        batch.add_column(sa.Column("result", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("split_parts") as batch:
        batch.drop_column("result")
