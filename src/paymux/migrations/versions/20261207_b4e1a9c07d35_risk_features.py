"""risk features: bucketed velocity counters and links between subjects, keyed by hashes of
the subjects' values

Revision ID: b4e1a9c07d35
Revises: 3c9d5f1a7e62
Create Date: 2026-12-07 14:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import paymux.kit.db

revision: str = "b4e1a9c07d35"
down_revision: str | None = "3c9d5f1a7e62"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The primary keys are the indexes the window reads range-scan (subject, key, measure,
    # resolution, then bucket_start) and the upserts conflict on.
    op.create_table(
        "risk_counters",
        sa.Column("subject", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("measure", sa.String(length=16), nullable=False),
        sa.Column("resolution", sa.String(length=8), nullable=False),
        sa.Column("bucket_start", paymux.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "subject",
            "key",
            "measure",
            "resolution",
            "bucket_start",
            name=op.f("pk_risk_counters"),
        ),
    )
    op.create_table(
        "risk_links",
        sa.Column("per_subject", sa.String(length=16), nullable=False),
        sa.Column("per_key", sa.String(length=32), nullable=False),
        sa.Column("counted_subject", sa.String(length=16), nullable=False),
        sa.Column("counted_key", sa.String(length=32), nullable=False),
        sa.Column("first_seen", paymux.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen", paymux.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "per_subject",
            "per_key",
            "counted_subject",
            "counted_key",
            name=op.f("pk_risk_links"),
        ),
    )
    with op.batch_alter_table("risk_links", schema=None) as batch_op:
        batch_op.create_index(
            "ix_risk_links_window",
            ["per_subject", "per_key", "counted_subject", "last_seen"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("risk_links", schema=None) as batch_op:
        batch_op.drop_index("ix_risk_links_window")
    op.drop_table("risk_links")
    op.drop_table("risk_counters")
