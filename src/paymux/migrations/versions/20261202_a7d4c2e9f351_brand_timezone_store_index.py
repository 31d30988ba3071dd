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
    with op.batch_alter_table("merchants") as batch:
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=True))
    with op.batch_alter_table("apps") as batch:
        batch.add_column(sa.Column("display_name", sa.String(200), nullable=True))
        batch.add_column(sa.Column("logo", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("logo_type", sa.String(16), nullable=True))
        batch.add_column(sa.Column("logo_digest", sa.String(64), nullable=True))
    expression = _STORE_CODE[op.get_bind().dialect.name]
    op.create_index(
        "ix_payments_store_code",
        "payments",
        ["app_id", "livemode", sa.text(expression), "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_payments_store_code", table_name="payments")
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("logo_digest")
        batch.drop_column("logo_type")
        batch.drop_column("logo")
        batch.drop_column("display_name")
    with op.batch_alter_table("merchants") as batch:
        batch.drop_column("timezone")
