"""The merchant's verification of a challenged customer (risk ``challenge``, issue 14 §5).

A payment the rules challenged is stepped up at its channel where the channel can (Stripe's
3-D Secure, :func:`paymux.payments.service.step_up_plan`). Where no candidate channel can, the
payment is created with no attempt and ``next_action: {"type": "verify"}``: nothing exists at
any channel yet, so nothing can be paid. The merchant verifies the customer its own way (an SMS
code, an identity document) and calls :func:`verify`, which records how and only then routes
the payment and calls the channel, exactly as a create would have. A payment nobody verifies
expires like any other (it has no order to close).

A cashier payment challenged at creation offers only the methods that can step up until the
merchant verifies it; :func:`verify` then leaves every method to the customer's choice.
"""

from __future__ import annotations

import time

import structlog

from paymux.kit import clock
from paymux.kit.errors import Conflict
from paymux.payments import service
from paymux.payments.models import Payment
from paymux.payments.repository import PaymentRepository
from paymux.payments.schemas import PaymentVerify
from paymux.payments.states import PaymentStatus
from paymux.risk import hooks as risk
from paymux.routing import service as routing
from paymux.runtime import Runtime

log = structlog.get_logger(__name__)


def _not_waiting(why: str) -> Conflict:
    return Conflict("payment_not_awaiting_verification", why)


async def verify(
    rt: Runtime, *, app_id: str, livemode: bool, payment_id: str, body: PaymentVerify
) -> Payment:
    """Record the merchant's verification of the payment's customer, then route it and open
    its order at a channel (failover included): the payment comes back with its usual
    ``next_action``. Verifying a verified payment answers it as it is now (nothing is done
    twice); a payment that is not waiting for verification is a 409, another app's a 404."""
    async with rt.db.read() as session:  # scoped to the caller's app and mode: else a 404
        await service.get(session, app_id=app_id, livemode=livemode, payment_id=payment_id)
    started = time.monotonic()
    call_seconds = rt.settings.channel_timeout_seconds
    async with rt.db.transaction() as session:
        repo = PaymentRepository(session)
        payment = await repo.lock(payment_id)
        stored = dict(payment.verification or {})
        if stored.get("status") == service.VERIFIED:
            return payment
        if stored.get("status") != service.VERIFICATION_REQUIRED:
            raise _not_waiting("This payment does not wait for a verification.")
        if payment.status != PaymentStatus.pending:
            raise _not_waiting(f"The payment is {payment.status}.")
        if clock.now() >= payment.expires_at:
            raise _not_waiting("The payment has expired.")
        payment.verification = {
            **stored, "status": service.VERIFIED, "method": body.method,
            "reference": body.reference, "verified_at": clock.now().isoformat(),
        }  # fmt: skip
        log.info("payment_verified", payment=payment.id, method=body.method)
        if payment.cashier_methods is not None:  # the customer chooses, now among every method
            payment.next_action = service.cashier_action(rt.settings.public_url, payment)
            return payment
        refused = await risk.payment_refusals(
            session, payment, service.prechecks(service.as_request(payment))
        )
        plan = await routing.plan(
            session, app_id=payment.app_id, livemode=payment.livemode, method=payment.method,
            currency=payment.currency, amount=payment.amount, pinned=stored.get("channel"),
            customer=dict(payment.customer or {}), metadata=dict(payment.metadata_ or {}),
            refusals=refused,
        )  # fmt: skip
        pick = await routing.next_candidate(session, plan)
        if pick is None:  # every candidate's daily limit or breaker probe was taken meanwhile
            routing.raise_exhausted(plan, payment.method, payment.currency)
        attempt = service.new_attempt(payment, pick, call_seconds)
        service.point_at(payment, attempt)
        payment.next_action = None
        repo.add(attempt)
    result, _ = await service.run_attempts(
        rt, payment, attempt, plan, started=started,
        profit_sharing=bool(stored.get("profit_sharing")),
    )  # fmt: skip
    return result
