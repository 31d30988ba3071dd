"""risk lists: typed lists of the platform or of a merchant, in one mode, and their items

Revision ID: 8a41c7e2b9d0
Revises: 5e2f0b9c4d17
Create Date: 2026-12-03 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paymux.kit.db

revision: str = "8a41c7e2b9d0"
down_revision: str | None = "5e2f0b9c4d17"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_lists",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("owner", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", paymux.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_lists")),
        sa.UniqueConstraint(
            "owner", "livemode", "name", name=op.f("uq_risk_lists_owner_livemode_name")
        ),
    )
    with op.batch_alter_table("risk_lists", schema=None) as batch_op:
        batch_op.create_index("ix_risk_lists_owner", ["owner", "livemode", "id"], unique=False)
    op.create_table(
        "risk_list_items",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("list_id", sa.String(length=40), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("network", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("added_by", sa.String(length=128), nullable=False),
        sa.Column("expires_at", paymux.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", paymux.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", paymux.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"], ["risk_lists.id"], name=op.f("fk_risk_list_items_list_id_risk_lists")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_list_items")),
        sa.UniqueConstraint("list_id", "value", name=op.f("uq_risk_list_items_list_id_value")),
    )


def downgrade() -> None:
    op.drop_table("risk_list_items")
    with op.batch_alter_table("risk_lists", schema=None) as batch_op:
        batch_op.drop_index("ix_risk_lists_owner")
    op.drop_table("risk_lists")
