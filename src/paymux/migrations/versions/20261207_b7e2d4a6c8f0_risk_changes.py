"""risk: the audit trail of changes to lists, rule sets and reviews

Revision ID: b7e2d4a6c8f0
Revises: a9d3e5f7b1c2
Create Date: 2026-12-07 14:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paymux.kit.db

revision: str = "b7e2d4a6c8f0"
down_revision: str | None = "a9d3e5f7b1c2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_changes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("owner", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("object_type", sa.String(length=20), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("detail", paymux.kit.db.JSONType, nullable=False),
        sa.Column("created_at", paymux.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_changes")),
    )
    with op.batch_alter_table("risk_changes", schema=None) as batch_op:
        batch_op.create_index("ix_risk_changes_owner", ["owner", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("risk_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_risk_changes_owner")
    op.drop_table("risk_changes")
