"""payments.verification: a challenged payment waiting for (or done with) the merchant's own
verification of the customer

Revision ID: e8a3b5c7d912
Revises: b7e2d4a6c8f0
Create Date: 2026-12-07 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paymux.kit.db

revision: str = "e8a3b5c7d912"
down_revision: str | None = "b7e2d4a6c8f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ALTER (SQLite has ADD and DROP COLUMN): a batch copy of ``payments`` would lose
    # its expression index ix_payments_store_code, which reflection cannot see.
    op.add_column("payments", sa.Column("verification", paymux.kit.db.JSONType, nullable=True))


def downgrade() -> None:
    op.drop_column("payments", "verification")
