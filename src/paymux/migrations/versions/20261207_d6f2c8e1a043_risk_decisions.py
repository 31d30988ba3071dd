"""risk decisions, reviews and customers; restrict rules and score thresholds

Revision ID: d6f2c8e1a043
Revises: b4e1a9c07d35
Create Date: 2026-12-07 14:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paymux.kit.db

revision: str = "d6f2c8e1a043"
down_revision: str | None = "b4e1a9c07d35"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AT = paymux.kit.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    # Plain ALTERs (SQLite has ADD and DROP COLUMN): a batch copy of ``payments`` would lose
    # its expression index ix_payments_store_code, which reflection cannot see.
    op.add_column("payments", sa.Column("risk", paymux.kit.db.JSONType, nullable=True))
    with op.batch_alter_table("payment_funds", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("risk_held", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("risk_rule_sets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review_score", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("block_score", sa.Integer(), nullable=True))
    with op.batch_alter_table("risk_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("restrict_methods", paymux.kit.db.JSONType, nullable=True))
        batch_op.add_column(sa.Column("restrict_channels", paymux.kit.db.JSONType, nullable=True))
    op.create_table(
        "risk_decisions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("app_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("restrict_methods", paymux.kit.db.JSONType, nullable=True),
        sa.Column("restrict_channels", paymux.kit.db.JSONType, nullable=True),
        sa.Column("versions", paymux.kit.db.JSONType, nullable=False),
        sa.Column("results", paymux.kit.db.JSONType, nullable=False),
        sa.Column("features", paymux.kit.db.JSONType, nullable=False),
        sa.Column("latency_us", sa.Integer(), nullable=False),
        sa.Column("unevaluated", sa.Boolean(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_decisions")),
    )
    with op.batch_alter_table("risk_decisions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_risk_decisions_merchant", ["merchant_id", "livemode", "created_at"]
        )
        batch_op.create_index("ix_risk_decisions_subject", ["subject_id"])
    op.create_table(
        "risk_reviews",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("decision_id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("app_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("assignee", sa.String(length=128), nullable=True),
        sa.Column("deadline", _AT, nullable=False),
        sa.Column("on_expiry", sa.String(length=16), nullable=False),
        sa.Column("closed_by", sa.String(length=128), nullable=True),
        sa.Column("closed_at", _AT, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["risk_decisions.id"],
            name=op.f("fk_risk_reviews_decision_id_risk_decisions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_reviews")),
        sa.UniqueConstraint("decision_id", name=op.f("uq_risk_reviews_decision_id")),
    )
    with op.batch_alter_table("risk_reviews", schema=None) as batch_op:
        batch_op.create_index(
            "ix_risk_reviews_merchant", ["merchant_id", "livemode", "state", "id"]
        )
        batch_op.create_index("ix_risk_reviews_due", ["state", "deadline"])
    op.create_table(
        "risk_customers",
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("customer_ref", sa.String(length=128), nullable=False),
        sa.Column("first_seen_at", _AT, nullable=False),
        sa.Column("first_paid_at", _AT, nullable=True),
        sa.PrimaryKeyConstraint(
            "merchant_id", "livemode", "customer_ref", name=op.f("pk_risk_customers")
        ),
    )


def downgrade() -> None:
    with op.batch_alter_table("payment_funds", schema=None) as batch_op:
        batch_op.drop_column("risk_held")
    op.drop_column("payments", "risk")
    op.drop_table("risk_customers")
    with op.batch_alter_table("risk_reviews", schema=None) as batch_op:
        batch_op.drop_index("ix_risk_reviews_due")
        batch_op.drop_index("ix_risk_reviews_merchant")
    op.drop_table("risk_reviews")
    with op.batch_alter_table("risk_decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_risk_decisions_subject")
        batch_op.drop_index("ix_risk_decisions_merchant")
    op.drop_table("risk_decisions")
    with op.batch_alter_table("risk_rules", schema=None) as batch_op:
        batch_op.drop_column("restrict_channels")
        batch_op.drop_column("restrict_methods")
    with op.batch_alter_table("risk_rule_sets", schema=None) as batch_op:
        batch_op.drop_column("block_score")
        batch_op.drop_column("review_score")
