"""routing: rules and settings per app, statistics, daily limit usage, breakers; channel
account limits, fees and maintenance windows; attempt explanations; payment customer reference

Revision ID: 8c4e1f2a7b90
Revises: 5a1e7c2d9b31
Create Date: 2026-11-25 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import paymux.kit.db

revision: str = "8c4e1f2a7b90"
down_revision: str | None = "5a1e7c2d9b31"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "routing_settings",
        sa.Column("app_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.String(length=16), nullable=False),
        sa.Column("weight_success", sa.Float(), nullable=False),
        sa.Column("weight_cost", sa.Float(), nullable=False),
        sa.Column("weight_latency", sa.Float(), nullable=False),
        sa.Column("exploration", sa.Float(), nullable=False),
        sa.Column("updated_at", paymux.kit.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_routing_settings_app_id_apps")
        ),
        sa.PrimaryKeyConstraint("app_id", name=op.f("pk_routing_settings")),
    )
    op.create_table(
        "routing_rules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("app_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("conditions", _JSON, nullable=False),
        sa.Column("action", _JSON, nullable=False),
        sa.Column("created_at", paymux.kit.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", paymux.kit.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], name=op.f("fk_routing_rules_app_id_apps")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_rules")),
    )
    op.create_index("ix_routing_rules_app_position", "routing_rules", ["app_id", "position"])
    op.create_table(
        "routing_stats",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("minute", paymux.kit.db.UTCDateTime(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "method", "minute", name=op.f("pk_routing_stats")),
    )
    op.create_table(
        "routing_limit_usage",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "day", name=op.f("pk_routing_limit_usage")),
    )
    op.create_table(
        "routing_breakers",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("consecutive_errors", sa.Integer(), nullable=False),
        sa.Column("window_start", paymux.kit.db.UTCDateTime(), nullable=True),
        sa.Column("window_total", sa.Integer(), nullable=False),
        sa.Column("window_errors", sa.Integer(), nullable=False),
        sa.Column("opened_at", paymux.kit.db.UTCDateTime(), nullable=True),
        sa.Column("probe_started_at", paymux.kit.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_routing_breakers")),
    )
    with op.batch_alter_table("channel_accounts") as batch:
        batch.add_column(sa.Column("fee_fixed", sa.BigInteger(), server_default="0",
                                   nullable=False))  # fmt: skip
        batch.add_column(sa.Column("fee_min", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("fee_max", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("min_amount", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("max_amount", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("daily_amount_limit", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("daily_count_limit", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("maintenance", _JSON, server_default="[]", nullable=False))
    with op.batch_alter_table("payment_attempts") as batch:
        batch.add_column(sa.Column("routing", _JSON, nullable=True))
        batch.add_column(sa.Column("limit_day", sa.Date(), nullable=True))
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("customer_ref", sa.String(length=128), nullable=True))
    op.create_index("ix_payments_customer_ref", "payments", ["app_id", "customer_ref"])


def downgrade() -> None:
    op.drop_index("ix_payments_customer_ref", table_name="payments")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("customer_ref")
    with op.batch_alter_table("payment_attempts") as batch:
        batch.drop_column("limit_day")
        batch.drop_column("routing")
    with op.batch_alter_table("channel_accounts") as batch:
        for column in ("maintenance", "daily_count_limit", "daily_amount_limit", "max_amount",
                       "min_amount", "fee_max", "fee_min", "fee_fixed"):  # fmt: skip
            batch.drop_column(column)
    op.drop_table("routing_breakers")
    op.drop_table("routing_limit_usage")
    op.drop_table("routing_stats")
    op.drop_index("ix_routing_rules_app_position", table_name="routing_rules")
    op.drop_table("routing_rules")
    op.drop_table("routing_settings")
