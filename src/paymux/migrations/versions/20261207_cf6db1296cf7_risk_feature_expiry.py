"""risk features: indexes that the purge of old counter buckets and links walks (by
resolution and bucket start; by last seen)

Revision ID: cf6db1296cf7
Revises: d6f2c8e1a043
Create Date: 2026-12-07 16:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "cf6db1296cf7"
down_revision: str | None = "d6f2c8e1a043"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Neither bucket column ever changes, so updates of the counts stay HOT on PostgreSQL.
    with op.batch_alter_table("risk_counters", schema=None) as batch_op:
        batch_op.create_index("ix_risk_counters_expiry", ["bucket_start"], unique=False)
    with op.batch_alter_table("risk_links", schema=None) as batch_op:
        batch_op.create_index("ix_risk_links_expiry", ["last_seen"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("risk_links", schema=None) as batch_op:
        batch_op.drop_index("ix_risk_links_expiry")
    with op.batch_alter_table("risk_counters", schema=None) as batch_op:
        batch_op.drop_index("ix_risk_counters_expiry")
