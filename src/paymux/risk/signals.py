"""The features of one request: only the families some rule in force reads are computed.

- request: what the caller passed (amount, method, IP, device, SKU, …) and the IP's region
  from the offline database (:mod:`paymux.risk.features.regions`);
- time: the local hour and weekday (China time, the platform's business day);
- customer: first seen / first paid (``risk_customers``) and the KYC level the caller knows;
- velocity and links: bucketed counters (:mod:`paymux.risk.features.velocity`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.risk.attributes import EventType, Family, families
from paymux.risk.features import regions, velocity
from paymux.risk.repository import DecisionRepository
from paymux.settlement.policy import TIMEZONE

NEW_CUSTOMER = dt.timedelta(hours=24)

ip_db: str | None = None
"""The IP→region database in use (the setting ``risk_ip_db``; None: the shipped one)."""


def configure(path: str | None) -> None:
    """Use the IP→region database at ``path`` (None: the shipped one), loaded now so that a
    broken file stops the process at boot rather than failing a payment."""
    global ip_db
    regions.load(path)
    ip_db = path


@dataclass(slots=True)
class Request:
    """One request as the risk engine sees it."""

    event: EventType
    merchant_id: str
    app_id: str
    livemode: bool
    subject_type: str
    amount: int
    currency: str
    values: dict[str, Any] = field(default_factory=dict)
    """Request attributes the caller knows (``method``, ``ip``, ``device_id``, ``sku`` …)."""
    customer_ref: str | None = None
    kyc_level: int | None = None
    customer_since: dt.datetime | None = None
    """When the merchant says the customer's account was opened (else: first seen here)."""
    subject_id: str | None = None

    def subjects(self) -> velocity.Subjects:
        v = self.values
        payer = v.get("payer_account") or v.get("payee_account")
        return velocity.Subjects(
            merchant_id=self.merchant_id, livemode=self.livemode, customer=self.customer_ref,
            device=v.get("device_id") or None, ip=v.get("ip") or None,
            payer_account=payer or None, sku=v.get("sku") or None,
        )  # fmt: skip


async def features(session: AsyncSession, req: Request, names: Collection[str],
                   now: dt.datetime) -> dict[str, Any]:  # fmt: skip
    """The values of ``names`` (and of the cheap request attributes) for ``req``; a name with
    no value is absent (a rule reading it errors, and applies its ``on_error``)."""
    wanted = families(req.event, set(names))
    out: dict[str, Any] = {"amount": req.amount, "currency": req.currency,
                           "merchant_id": req.merchant_id}  # fmt: skip
    out.update({k: v for k, v in req.values.items() if v is not None})
    if "ip_region" in names and out.get("ip"):
        region = regions.region_of(str(out["ip"]), ip_db)
        if region is not None:
            out["ip_region"] = region
    local = now.astimezone(TIMEZONE)  # always: cheap, and a backtest may want it
    out["local_hour"], out["weekday"] = local.hour, local.isoweekday()
    ref = None
    if Family.customer in wanted and req.customer_ref is not None:
        ref = (req.merchant_id, req.livemode, req.customer_ref)
    found = None
    if ref is not None or wanted & {Family.velocity, Family.link}:  # one statement for all
        values, found = await velocity.read_with_customer(session, req.subjects(), names, now,
                                                          ref)  # fmt: skip
        out.update(values)
    if Family.customer in wanted:
        out.update(_customer(req, found, now))
    return out


def _customer(req: Request, found: tuple[dt.datetime, dt.datetime | None] | None,
              now: dt.datetime) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"customer.kyc_level": req.kyc_level or 0}
    if req.customer_ref is None:
        return out
    since = req.customer_since or (found[0] if found else now)
    age = max(now - since, dt.timedelta())
    out.update({
        "customer.id": req.customer_ref, "customer.is_new": age < NEW_CUSTOMER,
        "customer.age_days": age.days,
        "customer.has_paid": bool(found and found[1] is not None),
    })  # fmt: skip
    return out


async def count_payer(session: AsyncSession, req: Request, now: dt.datetime) -> None:
    """A success: count it toward its payer account (and link the payer to the customer,
    device and IP); the other subjects were counted when the payment was created."""
    if req.subjects().payer_account is not None:
        await velocity.record(session, req.subjects(), "payments", req.amount, now,
                              only=("payer_account",))  # fmt: skip


async def count(session: AsyncSession, req: Request, measure: str | None,
                now: dt.datetime) -> None:  # fmt: skip
    """Count ``req`` toward ``measure`` (a velocity measure noun; None: nothing to count) and
    remember its customer, in the caller's transaction."""
    if measure is not None:
        await velocity.record(session, req.subjects(), measure, req.amount, now)
    paid = req.event is EventType.payment_succeeded
    if req.customer_ref is not None and (paid or req.event is EventType.payment_create):
        await DecisionRepository(session).seen(req.merchant_id, req.livemode, req.customer_ref,
                                               now, paid=paid)  # fmt: skip
