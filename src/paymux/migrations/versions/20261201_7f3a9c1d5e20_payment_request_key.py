"""payment request key: which Idempotency-Key and body created a payment (crash recovery)

Revision ID: 7f3a9c1d5e20
Revises: d01c88f49ac1
Create Date: 2026-12-01 23:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7f3a9c1d5e20"
down_revision: str | None = "d01c88f49ac1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("request_key", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("request_key")
