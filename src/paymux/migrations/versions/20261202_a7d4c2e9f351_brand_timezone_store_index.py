"""brand per app (display name, uploaded logo), time zone per merchant, and the index that lists
a store code's payments

Revision ID: a7d4c2e9f351
Revises: e3b8d2a6f104
Create Date: 2026-12-02 18:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7d4c2e9f351"
down_revision: str | None = "e3b8d2a6f104"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same expression as paymux.payments.models.store_code_of (key inline, so it matches).
_STORE_CODE = {
    "postgresql": "(metadata ->> 'store_code')",
    "sqlite": "json_extract(metadata, '$.store_code')",
}


def upgrade() -> None:
    # Plain ADD COLUMN (nullable) on both databases: no table rebuild, which on SQLite would
    # drop a table other tables' foreign keys point at.
    op.add_column("merchants", sa.Column("timezone", sa.String(64), nullable=True))
    op.add_column("apps", sa.Column("display_name", sa.String(200), nullable=True))
    op.add_column("apps", sa.Column("logo", sa.LargeBinary(), nullable=True))
    op.add_column("apps", sa.Column("logo_type", sa.String(16), nullable=True))
    op.add_column("apps", sa.Column("logo_digest", sa.String(64), nullable=True))
    expression = _STORE_CODE[op.get_bind().dialect.name]
    op.create_index(
        "ix_payments_store_code",
        "payments",
        ["app_id", "livemode", sa.text(expression), "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_payments_store_code", table_name="payments")
    # Native DROP COLUMN (SQLite ≥ 3.35 has it): a batch rebuild of apps would fail on the
    # foreign keys that point at it.
    for table, column in (
        ("apps", "logo_digest"),
        ("apps", "logo_type"),
        ("apps", "logo"),
        ("apps", "display_name"),
        ("merchants", "timezone"),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
