"""Where every new payment comes in: the flow is picked here, each flow lives in its module.

- a request whose earlier run (same ``Idempotency-Key``, same body) died after creating its
  payment is resumed (:mod:`paymux.payments.recovery`) — found when its number turns out taken;
- a payment code is charged and waited for synchronously (:mod:`paymux.payments.barcode`);
- anything else is created at a channel, or paid from a wallet (:mod:`paymux.payments.service`).

The flows build on :mod:`paymux.payments.service`; this module sits above all of them, so none of
them imports another's caller.
"""

from __future__ import annotations

from paymux.kit.errors import Conflict
from paymux.payments import barcode, recovery, service
from paymux.payments.models import Payment
from paymux.payments.schemas import PaymentCreate
from paymux.runtime import Runtime


async def create(
    rt: Runtime, *, app_id: str, merchant_id: str, livemode: bool, req: PaymentCreate,
    top_up_wallet_id: str | None = None, request_key: str | None = None,
) -> tuple[Payment, int]:  # fmt: skip
    """Create a payment through the flow its method and request call for. Returns the payment
    and the milliseconds spent waiting for channels.

    ``request_key`` (:func:`paymux.kit.idempotency.request_key`) marks the payment as this
    request's: when an earlier run of the very same request (same key, same body) died after
    creating it, the payment is answered as far as it is safely known instead of a
    ``duplicate_out_trade_no`` (:mod:`paymux.payments.recovery`)."""
    try:
        if barcode.handles(req.method):
            return await barcode.create(
                rt, app_id=app_id, merchant_id=merchant_id, livemode=livemode, req=req,
                request_key=request_key,
            )  # fmt: skip
        return await service.create(
            rt, app_id=app_id, merchant_id=merchant_id, livemode=livemode, req=req,
            top_up_wallet_id=top_up_wallet_id, request_key=request_key,
        )  # fmt: skip
    except Conflict as exc:
        # The number is taken: by this very request's earlier run (which died after creating
        # it) the payment is recovered; by anything else it is the 409. Looked up only here,
        # so a create pays nothing for recovery.
        if request_key is None or exc.code != service.DUPLICATE:
            raise
        recovered = await recovery.recover(
            rt, app_id=app_id, livemode=livemode, req=req, request_key=request_key
        )
        if recovered is None:
            raise
        return recovered, 0
