"""routing livemode: rules and settings belong to one mode, like every other merchant object

Until now an app's routing rules and settings were shared by its test and live keys. What the
existing rows become:

- settings: the app's row is kept for test mode and copied (same strategy, weights and version)
  for live mode, so both modes route exactly as before;
- a rule goes to the mode of the channel accounts it references (``action.targets`` and
  ``conditions.last_channels``); one that references no account (channel names, ``$preferred``,
  ``$last`` only) goes to test mode — a live operator re-creates it with a live key;
- a rule referencing accounts of both modes is split: each mode gets a copy without the other
  mode's accounts (they never took that mode's payments, so each mode routes as before); a copy
  whose action would be left without any target is not made;
- positions are renumbered per app and mode, keeping the order.

Downgrade keeps every rule (shared again) and the test-mode settings.

Revision ID: d01c88f49ac1
Revises: 3d9b6f0e2a41
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from paymux.kit.ids import new_id

revision: str = "d01c88f49ac1"
down_revision: str | None = "3d9b6f0e2a41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_SETTINGS_COLUMNS = ("app_id", "version", "strategy", "weight_success", "weight_cost",
                     "weight_latency", "exploration", "updated_at")  # fmt: skip
_RULE_COLUMNS = ("id", "app_id", "position", "name", "enabled", "conditions", "action",
                 "created_at", "updated_at")  # fmt: skip

settings = sa.table(
    "routing_settings", sa.column("livemode", sa.Boolean), *map(sa.column, _SETTINGS_COLUMNS)
)
rules = sa.table(
    "routing_rules",
    sa.column("livemode", sa.Boolean),
    sa.column("conditions", _JSON),
    sa.column("action", _JSON),
    *(sa.column(c) for c in _RULE_COLUMNS if c not in ("conditions", "action")),
)
accounts = sa.table("channel_accounts", sa.column("id"), sa.column("app_id"), sa.column("mode"))


def _without(rule: Any, drop: set[str]) -> dict[str, Any] | None:
    """The rule's conditions and action without references to ``drop`` (None: no action left)."""
    conditions, action = dict(rule.conditions), dict(rule.action)
    if conditions.get("last_channels") is not None:
        conditions["last_channels"] = [t for t in conditions["last_channels"] if t not in drop]
    targets = list(action.get("targets") or [])
    keep = [i for i, t in enumerate(targets) if t not in drop]
    if action.get("weights") is not None:
        action["weights"] = [action["weights"][i] for i in keep]
    action["targets"] = [targets[i] for i in keep]
    if targets and not keep:
        return None
    return {"conditions": conditions, "action": action}


def _split_rules(bind: sa.Connection) -> None:
    mode_of = {(r.app_id, r.id): r.mode == "live" for r in bind.execute(sa.select(accounts))}
    for rule in bind.execute(sa.select(rules)).all():
        refs = list(rule.action.get("targets") or []) + list(
            rule.conditions.get("last_channels") or []
        )
        referenced = {
            ref: mode_of[rule.app_id, ref] for ref in refs if (rule.app_id, ref) in mode_of
        }
        modes = set(referenced.values())
        if modes == {True}:
            bind.execute(rules.update().where(rules.c.id == rule.id).values(livemode=True))
        elif modes == {True, False}:
            live = {ref for ref, is_live in referenced.items() if is_live}
            test_copy = _without(rule, live)
            live_copy = _without(rule, set(referenced) - live)
            this = rules.update().where(rules.c.id == rule.id)
            if test_copy is None:  # every target is live: the rule moves to live mode
                bind.execute(this.values(livemode=True, **(live_copy or {})))
                continue
            bind.execute(this.values(**test_copy))
            if live_copy is not None:
                values = {c: getattr(rule, c) for c in _RULE_COLUMNS} | live_copy
                bind.execute(rules.insert().values(livemode=True, **values | {"id": new_id("rr")}))
    _renumber(bind)


def _renumber(bind: sa.Connection) -> None:
    ordered = bind.execute(
        sa.select(rules.c.id, rules.c.app_id, rules.c.livemode).order_by(
            rules.c.app_id, rules.c.livemode, rules.c.position, rules.c.id
        )
    ).all()
    counters: dict[tuple[str, bool], int] = {}
    for row in ordered:
        key = (row.app_id, bool(row.livemode))
        bind.execute(
            rules.update().where(rules.c.id == row.id).values(position=counters.get(key, 0))
        )
        counters[key] = counters.get(key, 0) + 1


def upgrade() -> None:
    with op.batch_alter_table("routing_settings") as batch:
        batch.add_column(sa.Column("livemode", sa.Boolean(), server_default=sa.false(),
                                   nullable=False))  # fmt: skip
        batch.drop_constraint("pk_routing_settings", type_="primary")
        batch.create_primary_key("pk_routing_settings", ["app_id", "livemode"])
    columns = [settings.c[c] for c in _SETTINGS_COLUMNS]
    op.execute(
        settings.insert().from_select(
            ["livemode", *_SETTINGS_COLUMNS],
            sa.select(sa.true(), *columns).where(settings.c.livemode == sa.false()),
        )
    )
    with op.batch_alter_table("routing_rules") as batch:
        batch.add_column(sa.Column("livemode", sa.Boolean(), server_default=sa.false(),
                                   nullable=False))  # fmt: skip
        batch.drop_index("ix_routing_rules_app_position")
        batch.create_index("ix_routing_rules_app_mode_position", ["app_id", "livemode", "position"])
    _split_rules(op.get_bind())
    # No default for the mode from here on: every writer says which mode it acts in.
    for table in ("routing_settings", "routing_rules"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("livemode", server_default=None)


def downgrade() -> None:
    op.execute(settings.delete().where(settings.c.livemode == sa.true()))
    with op.batch_alter_table("routing_settings") as batch:
        batch.drop_constraint("pk_routing_settings", type_="primary")
        batch.create_primary_key("pk_routing_settings", ["app_id"])
        batch.drop_column("livemode")
    with op.batch_alter_table("routing_rules") as batch:
        batch.drop_index("ix_routing_rules_app_mode_position")
        batch.create_index("ix_routing_rules_app_position", ["app_id", "position"])
        batch.drop_column("livemode")
