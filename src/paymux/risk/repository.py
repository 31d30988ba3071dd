"""Every query of the risk domain: lists, rule sets, decisions, reviews, customers."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.kit.db import insert_of
from paymux.kit.ids import new_ids
from paymux.risk.models import (
    ReviewState,
    RiskChange,
    RiskCustomer,
    RiskDecision,
    RiskList,
    RiskListItem,
    RiskReview,
    Rule,
    RuleSet,
    RuleSetState,
    RuleTrip,
)

BATCH = 1_000
"""Items written per statement (a bulk import is a few hundred statements at most)."""


class RiskListRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Any) -> None:
        self.session.add(obj)

    async def get(self, owners: Sequence[str], livemode: bool, list_id: str) -> RiskList | None:
        """A list of one of ``owners`` in the mode (None: not there, or not theirs)."""
        stmt = sa.select(RiskList).where(RiskList.id == list_id, RiskList.owner.in_(owners),
                                         RiskList.livemode == livemode)  # fmt: skip
        return (await self.session.scalars(stmt)).first()

    async def lists(
        self, owners: Sequence[str], livemode: bool | None, *, limit: int,
        starting_after: str | None,
    ) -> tuple[list[RiskList], bool]:  # fmt: skip
        """The owners' lists in the mode (``None``: both)."""
        stmt = sa.select(RiskList).where(RiskList.owner.in_(owners))
        if livemode is not None:
            stmt = stmt.where(RiskList.livemode == livemode)
        if starting_after is not None:
            stmt = stmt.where(RiskList.id > starting_after)
        rows = list(await self.session.scalars(stmt.order_by(RiskList.id).limit(limit + 1)))
        return rows[:limit], len(rows) > limit

    async def named(
        self, owners: Sequence[str], livemode: bool, names: Collection[str]
    ) -> list[RiskList]:
        """The owners' lists of ``names`` in the mode (a preset reuses what is there)."""
        stmt = sa.select(RiskList).where(RiskList.owner.in_(owners), RiskList.livemode == livemode,
                                         RiskList.name.in_(sorted(names)))  # fmt: skip
        return list(await self.session.scalars(stmt.order_by(RiskList.id)))

    async def upsert_items(self, list_id: str, rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Add the items, or update the reason, expiry and who of those there already; returns
        (added, updated). ``rows``: value, network, reason, added_by, expires_at."""
        values = [r["value"] for r in rows]
        there: set[str] = set()
        for start in range(0, len(values), BATCH):
            stmt = sa.select(RiskListItem.value).where(
                RiskListItem.list_id == list_id,
                RiskListItem.value.in_(values[start : start + BATCH]),
            )
            there.update(await self.session.scalars(stmt))
        insert = insert_of(self.session.get_bind().dialect.name)(RiskListItem)
        stmt = insert.on_conflict_do_update(
            index_elements=["list_id", "value"],
            set_={"reason": insert.excluded.reason, "added_by": insert.excluded.added_by,
                  "expires_at": insert.excluded.expires_at,
                  "updated_at": insert.excluded.updated_at},
        )  # fmt: skip
        ids = new_ids("rli", len(rows))
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            now = clock.now()
            await self.session.execute(stmt, [
                {"id": ids[start + n], "list_id": list_id, "created_at": now, "updated_at": now,
                 **row} for n, row in enumerate(chunk)
            ])  # fmt: skip
        await self._bump(list_id)
        return len(set(values) - there), len(there & set(values))

    async def _bump(self, list_id: str) -> None:
        await self.session.execute(sa.update(RiskList).where(RiskList.id == list_id)
                                   .values(revision=RiskList.revision + 1))  # fmt: skip

    async def remove_item(self, list_id: str, value: str) -> bool:
        result = await self.session.execute(
            sa.delete(RiskListItem).where(
                RiskListItem.list_id == list_id, RiskListItem.value == value
            )
        )
        removed = bool(getattr(result, "rowcount", 0))
        if removed:
            await self._bump(list_id)
        return removed

    async def heads(
        self, owners: Sequence[str], livemode: bool, names: Collection[str]
    ) -> list[tuple[str, str, str, int]]:
        """(id, owner, name, revision) of the owners' lists of ``names`` in the mode."""
        stmt = sa.select(RiskList.id, RiskList.owner, RiskList.name, RiskList.revision).where(
            RiskList.owner.in_(owners), RiskList.livemode == livemode,
            RiskList.name.in_(sorted(names)),
        )  # fmt: skip
        return [tuple(row) for row in await self.session.execute(stmt)]  # type: ignore[misc]

    async def live_items(
        self, list_id: str, now: dt.datetime
    ) -> tuple[set[str], dt.datetime | None]:
        """The values of a list that count at ``now``, and when the next of them expires."""
        live = sa.or_(RiskListItem.expires_at.is_(None), RiskListItem.expires_at > now)
        stmt = sa.select(RiskListItem.value, RiskListItem.expires_at).where(
            RiskListItem.list_id == list_id, live)  # fmt: skip
        values: set[str] = set()
        soonest: dt.datetime | None = None
        for value, expires in await self.session.execute(stmt):
            values.add(value)
            if expires is not None and (soonest is None or expires < soonest):
                soonest = expires
        return values, soonest

    async def items(
        self, list_id: str, *, limit: int, starting_after: str | None
    ) -> tuple[list[RiskListItem], bool]:
        stmt = sa.select(RiskListItem).where(RiskListItem.list_id == list_id)
        if starting_after is not None:
            stmt = stmt.where(RiskListItem.id > starting_after)
        rows = list(await self.session.scalars(stmt.order_by(RiskListItem.id).limit(limit + 1)))
        return rows[:limit], len(rows) > limit

    async def count_items(self, list_id: str) -> int:
        stmt = sa.select(sa.func.count()).where(RiskListItem.list_id == list_id)
        return int((await self.session.execute(stmt)).scalar_one())

    async def live_values(
        self, owners: Sequence[str], livemode: bool, names: Collection[str], now: dt.datetime
    ) -> dict[tuple[str, str], set[str]]:
        """The items of the owners' lists of ``names`` in the mode that count at ``now``, by
        (owner, name); a list without items is there, empty."""
        if not names:
            return {}
        found = sa.select(RiskList.id, RiskList.owner, RiskList.name).where(
            RiskList.owner.in_(owners), RiskList.livemode == livemode,
            RiskList.name.in_(sorted(names)),
        )  # fmt: skip
        out: dict[tuple[str, str], set[str]] = {}
        by_id: dict[str, tuple[str, str]] = {}
        for list_id, owner, name in await self.session.execute(found):
            out[(owner, name)] = set()
            by_id[list_id] = (owner, name)
        if not by_id:
            return out
        live = sa.or_(RiskListItem.expires_at.is_(None), RiskListItem.expires_at > now)
        items = sa.select(RiskListItem.list_id, RiskListItem.value).where(
            RiskListItem.list_id.in_(list(by_id)), live
        )
        for list_id, value in await self.session.execute(items):
            out[by_id[list_id]].add(value)
        return out

    async def holds(
        self, list_id: str, form: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address
        | None, now: dt.datetime,
    ) -> RiskListItem | None:  # fmt: skip
        """The list's item that ``form`` is (or, for an address, whose network holds it), not
        expired at ``now``."""
        live = sa.or_(RiskListItem.expires_at.is_(None), RiskListItem.expires_at > now)
        stmt = sa.select(RiskListItem).where(RiskListItem.list_id == list_id,
                                             RiskListItem.value == form, live)  # fmt: skip
        found = (await self.session.scalars(stmt)).first()
        if found is not None or address is None:
            return found
        networks = sa.select(RiskListItem).where(RiskListItem.list_id == list_id,
                                                 RiskListItem.network.is_(True), live)  # fmt: skip
        for item in await self.session.scalars(networks):
            network = ipaddress.ip_network(item.value)
            if network.version == address.version and address in network:
                return item
        return None


class RuleSetRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(
        self, owner: str, livemode: bool | None, rule_set_id: str, *, lock: bool = False
    ) -> RuleSet | None:
        stmt = sa.select(RuleSet).where(RuleSet.id == rule_set_id, RuleSet.owner == owner)
        if livemode is not None:
            stmt = stmt.where(RuleSet.livemode == livemode)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.scalars(stmt)).first()

    async def published(self, owner: str, livemode: bool) -> list[RuleSet]:
        """The owner's rule set(s) in force, locked (publishing replaces them)."""
        stmt = sa.select(RuleSet).where(
            RuleSet.owner == owner, RuleSet.livemode == livemode,
            RuleSet.state == RuleSetState.published,
        ).with_for_update()  # fmt: skip
        return list(await self.session.scalars(stmt))

    async def last_version(self, owner: str, livemode: bool) -> int:
        stmt = sa.select(sa.func.coalesce(sa.func.max(RuleSet.version), 0)).where(
            RuleSet.owner == owner, RuleSet.livemode == livemode
        )
        return int((await self.session.execute(stmt)).scalar_one() or 0)

    async def rules_of(self, rule_set_id: str) -> list[Rule]:
        stmt = sa.select(Rule).where(Rule.rule_set_id == rule_set_id).order_by(Rule.position)
        return list(await self.session.scalars(stmt))

    async def listed(
        self, owner: str, livemode: bool | None, *, limit: int, starting_after: str | None
    ) -> tuple[list[RuleSet], bool]:
        stmt = sa.select(RuleSet).where(RuleSet.owner == owner)
        if livemode is not None:
            stmt = stmt.where(RuleSet.livemode == livemode)
        if starting_after is not None:
            stmt = stmt.where(RuleSet.id < starting_after)
        rows = list(await self.session.scalars(stmt.order_by(RuleSet.id.desc()).limit(limit + 1)))
        return rows[:limit], len(rows) > limit

    async def in_force(self, owner: str, livemode: bool) -> list[RuleSet]:
        """The owner's published rule set and its draft in shadow, if any (unlocked: what the
        engine runs)."""
        stmt = sa.select(RuleSet).where(
            RuleSet.owner == owner, RuleSet.livemode == livemode,
            sa.or_(RuleSet.state == RuleSetState.published,
                   sa.and_(RuleSet.state == RuleSetState.draft,
                           RuleSet.shadow_since.is_not(None))),
        )  # fmt: skip
        return list(await self.session.scalars(stmt))

    async def tripped(self, rule_set_id: str) -> frozenset[str]:
        stmt = sa.select(RuleTrip.rule_name).where(RuleTrip.rule_set_id == rule_set_id)
        return frozenset(await self.session.scalars(stmt))


class DecisionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Any) -> None:
        self.session.add(obj)

    async def get(self, merchant_id: str | None, livemode: bool | None,
                  decision_id: str) -> RiskDecision | None:  # fmt: skip
        stmt = sa.select(RiskDecision).where(RiskDecision.id == decision_id)
        if merchant_id is not None:
            stmt = stmt.where(RiskDecision.merchant_id == merchant_id)
        if livemode is not None:
            stmt = stmt.where(RiskDecision.livemode == livemode)
        return (await self.session.scalars(stmt)).first()

    async def of_subject(self, subject_id: str) -> RiskDecision | None:
        stmt = (sa.select(RiskDecision).where(RiskDecision.subject_id == subject_id)
                .order_by(RiskDecision.created_at.desc()).limit(1))  # fmt: skip
        return (await self.session.scalars(stmt)).first()

    async def in_range(
        self, merchant_id: str | None, livemode: bool, events: Sequence[str],
        start: dt.datetime, end: dt.datetime, limit: int,
    ) -> list[RiskDecision]:  # fmt: skip
        """The decisions of ``events`` in ``[start, end)``, oldest first (all merchants' when
        ``merchant_id`` is None: the platform's backtests)."""
        stmt = sa.select(RiskDecision).where(
            RiskDecision.livemode == livemode, RiskDecision.event.in_(events),
            RiskDecision.created_at >= start, RiskDecision.created_at < end,
        )  # fmt: skip
        if merchant_id is not None:
            stmt = stmt.where(RiskDecision.merchant_id == merchant_id)
        return list(await self.session.scalars(stmt.order_by(RiskDecision.created_at).limit(limit)))

    async def unevaluated(self, limit: int) -> list[str]:
        """Payments' decisions the engine could not make, not yet made again."""
        stmt = (sa.select(RiskDecision.id)
                .where(RiskDecision.unevaluated.is_(True), RiskDecision.reevaluated_at.is_(None),
                       RiskDecision.event == "payment.create",
                       RiskDecision.subject_id.is_not(None))
                .order_by(RiskDecision.created_at).limit(limit))  # fmt: skip
        return list(await self.session.scalars(stmt))

    async def refunded_payments(self, payment_ids: Sequence[str]) -> int:
        from paymux.payments.models import Payment

        total = 0
        for at in range(0, len(payment_ids), BATCH):
            stmt = (
                sa.select(sa.func.count())
                .select_from(Payment)
                .where(Payment.id.in_(payment_ids[at : at + BATCH]), Payment.amount_refunded > 0)
            )
            total += int(await self.session.scalar(stmt) or 0)
        return total

    async def reviewed_decisions(self, decision_ids: Sequence[str]) -> int:
        total = 0
        for at in range(0, len(decision_ids), BATCH):
            stmt = (
                sa.select(sa.func.count())
                .select_from(RiskReview)
                .where(RiskReview.decision_id.in_(decision_ids[at : at + BATCH]))
            )
            total += int(await self.session.scalar(stmt) or 0)
        return total

    # -- reviews
    async def review(self, merchant_id: str | None, livemode: bool | None, review_id: str, *,
                     lock: bool = False) -> RiskReview | None:  # fmt: skip
        stmt = sa.select(RiskReview).where(RiskReview.id == review_id)
        if merchant_id is not None:
            stmt = stmt.where(RiskReview.merchant_id == merchant_id)
        if livemode is not None:
            stmt = stmt.where(RiskReview.livemode == livemode)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.scalars(stmt)).first()

    async def review_of(self, subject_id: str) -> RiskReview | None:
        stmt = sa.select(RiskReview).where(RiskReview.subject_id == subject_id)
        return (await self.session.scalars(stmt.order_by(RiskReview.id.desc()).limit(1))).first()

    async def reviews(self, merchant_id: str | None, livemode: bool | None,
                      state: ReviewState | None, *, limit: int,
                      starting_after: str | None) -> tuple[list[RiskReview], bool]:  # fmt: skip
        stmt = sa.select(RiskReview)
        if merchant_id is not None:
            stmt = stmt.where(RiskReview.merchant_id == merchant_id)
        if livemode is not None:
            stmt = stmt.where(RiskReview.livemode == livemode)
        if state is not None:
            stmt = stmt.where(RiskReview.state == state)
        if starting_after is not None:
            stmt = stmt.where(RiskReview.id < starting_after)
        stmt = stmt.order_by(RiskReview.id.desc()).limit(limit + 1)
        rows = list(await self.session.scalars(stmt))
        return rows[:limit], len(rows) > limit

    async def overdue(self, now: dt.datetime, limit: int) -> list[tuple[str, str]]:
        """(id, on_expiry) of the open reviews whose deadline has passed, oldest first."""
        stmt = (sa.select(RiskReview.id, RiskReview.on_expiry)
                .where(RiskReview.state == ReviewState.open, RiskReview.deadline <= now)
                .order_by(RiskReview.deadline).limit(limit))  # fmt: skip
        return [(row[0], row[1]) for row in await self.session.execute(stmt)]

    async def declined_holds(self, limit: int) -> list[RiskReview]:
        """Declined reviews of payments whose money is still held with nothing refunded."""
        from paymux.funds.models import PaymentFunds

        stmt = (
            sa.select(RiskReview)
            .join(PaymentFunds, PaymentFunds.payment_id == RiskReview.subject_id)
            .where(RiskReview.state == ReviewState.declined,
                   RiskReview.subject_type == "payment", PaymentFunds.risk_held.is_(True),
                   PaymentFunds.refunded + PaymentFunds.refund_reserved < PaymentFunds.gross)
            .order_by(RiskReview.id).limit(limit)
        )  # fmt: skip
        return list(await self.session.scalars(stmt))

    # -- the audit trail
    async def changes(self, owner: str, *, limit: int,
                      starting_after: str | None) -> tuple[list[RiskChange], bool]:  # fmt: skip
        stmt = sa.select(RiskChange).where(RiskChange.owner == owner)
        if starting_after is not None:
            stmt = stmt.where(RiskChange.id < starting_after)
        stmt = stmt.order_by(RiskChange.id.desc()).limit(limit + 1)
        rows = list(await self.session.scalars(stmt))
        return rows[:limit], len(rows) > limit

    # -- customers
    async def seen(self, merchant_id: str, livemode: bool, ref: str, now: dt.datetime,
                   paid: bool) -> None:  # fmt: skip
        """First sight of a customer (a no-op after it) and, once, its first payment."""
        dialect = self.session.get_bind().dialect.name
        stmt = insert_of(dialect)(RiskCustomer).values(
            merchant_id=merchant_id, livemode=livemode, customer_ref=ref, first_seen_at=now,
            first_paid_at=now if paid else None,
        )  # fmt: skip
        if paid:
            stmt = stmt.on_conflict_do_update(
                index_elements=["merchant_id", "livemode", "customer_ref"],
                set_={"first_paid_at": sa.func.coalesce(RiskCustomer.first_paid_at,
                                                        stmt.excluded.first_paid_at)},
            )  # fmt: skip
        else:
            stmt = stmt.on_conflict_do_nothing()
        await self.session.execute(stmt)
