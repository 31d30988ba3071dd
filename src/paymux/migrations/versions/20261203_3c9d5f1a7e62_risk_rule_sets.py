"""risk rule sets: immutable, versioned rule sets of the platform or of a merchant, and their
rules

Revision ID: 3c9d5f1a7e62
Revises: 8a41c7e2b9d0
Create Date: 2026-12-03 16:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paymux.kit.db

revision: str = "3c9d5f1a7e62"
down_revision: str | None = "8a41c7e2b9d0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_rule_sets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("owner", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", paymux.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_by", sa.String(length=128), nullable=True),
        sa.Column("published_at", paymux.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("retired_at", paymux.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_rule_sets")),
        sa.UniqueConstraint(
            "owner", "livemode", "version", name=op.f("uq_risk_rule_sets_owner_livemode_version")
        ),
    )
    with op.batch_alter_table("risk_rule_sets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_risk_rule_sets_owner", ["owner", "livemode", "state"], unique=False
        )
    op.create_table(
        "risk_rules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("rule_set_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("expression", sa.String(length=2000), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("on_error", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_set_id"],
            ["risk_rule_sets.id"],
            name=op.f("fk_risk_rules_rule_set_id_risk_rule_sets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_rules")),
        sa.UniqueConstraint(
            "rule_set_id", "position", name=op.f("uq_risk_rules_rule_set_id_position")
        ),
    )


def downgrade() -> None:
    op.drop_table("risk_rules")
    with op.batch_alter_table("risk_rule_sets", schema=None) as batch_op:
        batch_op.drop_index("ix_risk_rule_sets_owner")
    op.drop_table("risk_rule_sets")
