"""reconciliation's funds leg: a run is of one of a day's bills (trade or funds), funds lines
have longer kinds (``settlement``), the channels' settlements booked once, and the local side of
payouts by channel account

Revision ID: 5e2f0b9c4d17
Revises: c117c14dafac
Create Date: 2026-12-03 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import paymux.kit.db

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

revision: str = "5e2f0b9c4d17"
down_revision: str | None = "c117c14dafac"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("recon_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("bill", sa.String(length=8), server_default="trade", nullable=False)
        )
        batch_op.drop_constraint(
            "uq_recon_runs_channel_account_id_bill_date_run_no", type_="unique"
        )
        batch_op.create_unique_constraint(
            "uq_recon_runs_channel_account_id_bill_date_bill_run_no",
            ["channel_account_id", "bill_date", "bill", "run_no"],
        )
    with op.batch_alter_table("recon_configs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("opening_balances", _JSON, server_default="{}", nullable=False)
        )
    with op.batch_alter_table("recon_lines", schema=None) as batch_op:
        batch_op.alter_column(
            "kind", existing_type=sa.String(length=8), type_=sa.String(length=16),
            existing_nullable=False,
        )  # fmt: skip
    op.create_table(
        "recon_settlements",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("channel_account_id", sa.String(length=40), nullable=False),
        sa.Column("channel_ref", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("bill_date", sa.Date(), nullable=False),
        sa.Column("occurred_at", paymux.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("ledger_transaction_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", paymux.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_account_id"],
            ["channel_accounts.id"],
            name=op.f("fk_recon_settlements_channel_account_id_channel_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_settlements")),
        sa.UniqueConstraint(
            "channel_account_id",
            "channel_ref",
            name=op.f("uq_recon_settlements_channel_account_id_channel_ref"),
        ),
    )
    with op.batch_alter_table("recon_settlements", schema=None) as batch_op:
        batch_op.create_index(
            "ix_recon_settlements_day", ["channel_account_id", "bill_date"], unique=False
        )
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payouts_account_succeeded", ["channel_account_id", "succeeded_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.drop_index("ix_payouts_account_succeeded")
    with op.batch_alter_table("recon_settlements", schema=None) as batch_op:
        batch_op.drop_index("ix_recon_settlements_day")
    op.drop_table("recon_settlements")
    with op.batch_alter_table("recon_configs", schema=None) as batch_op:
        batch_op.drop_column("opening_balances")
    with op.batch_alter_table("recon_lines", schema=None) as batch_op:
        batch_op.alter_column(
            "kind", existing_type=sa.String(length=16), type_=sa.String(length=8),
            existing_nullable=False,
        )  # fmt: skip
    with op.batch_alter_table("recon_runs", schema=None) as batch_op:
        batch_op.drop_constraint(
            "uq_recon_runs_channel_account_id_bill_date_bill_run_no", type_="unique"
        )
        batch_op.create_unique_constraint(
            "uq_recon_runs_channel_account_id_bill_date_run_no",
            ["channel_account_id", "bill_date", "run_no"],
        )
        batch_op.drop_column("bill")
