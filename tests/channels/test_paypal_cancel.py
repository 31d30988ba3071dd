"""PayPal's "Cancel" returns the buyer to ``cancel_url`` — the cashier, which the gateway passes
as ``CreatePayment.cancel_url`` — never to the success ``return_url``; approval still returns to
``return_url``."""

from __future__ import annotations

from paymux.channels.base import ChannelPaymentStatus
from tests.channels import test_paypal as channel_tests
from tests.channels.test_paypal import RETURN_URL, Env, approve, payment

CASHIER = "http://gw.test/pay/pay_123?cancelled=1"
env = channel_tests.env


async def test_cancel_goes_to_the_cashier_and_approve_to_the_return(env: Env) -> None:
    request = payment(cancel_url=CASHIER)
    created = await env.adapter.create_payment(request)
    order_id = created.channel_trade_no
    assert order_id is not None
    r = await approve(env, order_id, "cancel")
    assert r.headers["location"].startswith(CASHIER + "&token=")
    state = await env.adapter.query_payment(request.out_trade_no, channel_trade_no=order_id)
    assert state.status is ChannelPaymentStatus.pending
    r = await approve(env, order_id)
    assert r.headers["location"].startswith(RETURN_URL)
