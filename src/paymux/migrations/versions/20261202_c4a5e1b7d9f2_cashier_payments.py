"""cashier payments: the methods the customer may choose from, in the merchant's order

Revision ID: c4a5e1b7d9f2
Revises: 7f3a9c1d5e20
Create Date: 2026-12-02 14:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c4a5e1b7d9f2"
down_revision: str | None = "7f3a9c1d5e20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("cashier_methods", _JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("cashier_methods")
