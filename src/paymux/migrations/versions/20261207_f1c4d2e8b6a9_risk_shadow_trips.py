"""risk: draft rule sets in shadow, rules tripped by their error rate, re-evaluated decisions

Revision ID: f1c4d2e8b6a9
Revises: cf6db1296cf7
Create Date: 2026-12-07 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paymux.kit.db

revision: str = "f1c4d2e8b6a9"
down_revision: str | None = "cf6db1296cf7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AT = paymux.kit.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("risk_rule_sets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shadow_since", _AT, nullable=True))
    with op.batch_alter_table("risk_decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reevaluated_at", _AT, nullable=True))
    where = sa.text("unevaluated AND reevaluated_at IS NULL")
    op.create_index("ix_risk_decisions_unevaluated", "risk_decisions", ["created_at"],
                    postgresql_where=where, sqlite_where=where)  # fmt: skip
    op.create_table(
        "risk_rule_trips",
        sa.Column("rule_set_id", sa.String(length=40), nullable=False),
        sa.Column("rule_name", sa.String(length=64), nullable=False),
        sa.Column("evaluations", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("tripped_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("rule_set_id", "rule_name", name=op.f("pk_risk_rule_trips")),
    )


def downgrade() -> None:
    op.drop_table("risk_rule_trips")
    op.drop_index("ix_risk_decisions_unevaluated", table_name="risk_decisions")
    with op.batch_alter_table("risk_decisions", schema=None) as batch_op:
        batch_op.drop_column("reevaluated_at")
    with op.batch_alter_table("risk_rule_sets", schema=None) as batch_op:
        batch_op.drop_column("shadow_since")
