"""store codes: a printable static QR per store (码牌)

Revision ID: e3b8d2a6f104
Revises: c4a5e1b7d9f2
Create Date: 2026-12-02 14:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e3b8d2a6f104"
down_revision: str | None = "c4a5e1b7d9f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "store_codes",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(127), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], name=op.f("fk_store_codes_app_id_apps")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_codes")),
        sa.UniqueConstraint("code", name=op.f("uq_store_codes_code")),
    )
    op.create_index(op.f("ix_store_codes_app_id"), "store_codes", ["app_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_store_codes_app_id"), table_name="store_codes")
    op.drop_table("store_codes")
