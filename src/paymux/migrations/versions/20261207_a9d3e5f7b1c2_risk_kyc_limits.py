"""risk: the withdrawal limits by KYC level become the platform's first rule set

Payouts used to check fixed limits per verification level in code (payouts.policy.LIMITS).
They are rules now: this puts them in force as the platform's rule set, in each mode where the
platform has none, so a platform keeps its limits and changes them by publishing a new version.

Revision ID: a9d3e5f7b1c2
Revises: f1c4d2e8b6a9
Create Date: 2026-12-07 14:40:00
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a9d3e5f7b1c2"
down_revision: str | None = "f1c4d2e8b6a9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIMITS = {0: (500_00, 3, 1_000_00), 1: (50_000_00, 10, 200_000_00),
          2: (500_000_00, 20, 1_000_000_00)}  # fmt: skip
"""Per KYC level: per payout, payouts a day, amount a day (fen) — what payouts.policy had."""

_SETS = sa.table(
    "risk_rule_sets", sa.column("id"), sa.column("owner"), sa.column("livemode"),
    sa.column("version"), sa.column("state"), sa.column("note"), sa.column("created_by"),
    sa.column("created_at"), sa.column("published_by"), sa.column("published_at"),
)  # fmt: skip
_RULES = sa.table(
    "risk_rules", sa.column("id"), sa.column("rule_set_id"), sa.column("position"),
    sa.column("name"), sa.column("event"), sa.column("expression"), sa.column("action"),
    sa.column("score"), sa.column("mode"), sa.column("on_error"),
)  # fmt: skip


def rules() -> list[tuple[str, str]]:
    """(name, expression) of every limit rule."""
    out = []
    for level, (per_payout, count, amount) in LIMITS.items():
        kyc = f"customer.kyc_level == {level}"
        out += [
            (f"kyc{level}_per_payout", f"{kyc} && amount > {per_payout}"),
            (f"kyc{level}_daily_count", f"{kyc} && count_payouts_customer_24h >= {count}"),
            (f"kyc{level}_daily_amount",
             f"{kyc} && sum_payouts_customer_24h + amount > {amount}"),
        ]  # fmt: skip
    return out


def upgrade() -> None:
    conn = op.get_bind()
    now = dt.datetime.now(dt.UTC)
    for livemode in (False, True):
        in_force = conn.execute(
            sa.select(_SETS.c.id).where(
                _SETS.c.owner == "platform",
                _SETS.c.livemode == livemode,
                _SETS.c.state == "published",
            )
        ).first()
        if in_force is not None:
            continue
        last = conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(_SETS.c.version), 0)).where(
                _SETS.c.owner == "platform", _SETS.c.livemode == livemode
            )
        ).scalar_one()
        mode = "live" if livemode else "test"
        set_id = f"rrs_kyc_limits_{mode}"
        op.bulk_insert(_SETS, [{
            "id": set_id, "owner": "platform", "livemode": livemode, "version": last + 1,
            "state": "published", "created_by": "system:migration", "created_at": now,
            "note": "withdrawal limits by KYC level (were payouts' fixed limits)",
            "published_by": "system:migration", "published_at": now,
        }])  # fmt: skip
        op.bulk_insert(_RULES, [
            {"id": f"rru_kyc_{mode}_{n:02d}", "rule_set_id": set_id, "position": n,
             "name": name, "event": "payout.create", "expression": expression,
             "action": "block", "score": 0, "mode": "active", "on_error": "review"}
            for n, (name, expression) in enumerate(rules())
        ])  # fmt: skip


def downgrade() -> None:
    for mode in ("test", "live"):
        op.execute(_RULES.delete().where(_RULES.c.rule_set_id == f"rrs_kyc_limits_{mode}"))
        op.execute(_SETS.delete().where(_SETS.c.id == f"rrs_kyc_limits_{mode}"))
