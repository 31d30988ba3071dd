"""The official PayPal SDK (``paypal-server-sdk``) against the PayPal sandbox on loopback.

The SDK is PayPal's own client of the same REST API: it fetches an OAuth2 token with its
client id and secret, creates an order (its ``OrderRequest`` model serialised its way), reads
and captures it, refunds the capture, reads the refund and searches transactions. Every answer
must parse into the SDK's models with the statuses PayPal documents, so the sandbox speaks
PayPal's wire shapes and not only what our adapter expects. The order's request body our adapter
sends is compared with the SDK's serialisation of the same order.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import httpx
import pytest

pytest.importorskip("paypalserversdk")

from paypalserversdk.api_helper import APIHelper
from paypalserversdk.configuration import Environment, Server
from paypalserversdk.exceptions.error_exception import ErrorException
from paypalserversdk.http.auth.o_auth_2 import ClientCredentialsAuthCredentials
from paypalserversdk.models.amount_with_breakdown import AmountWithBreakdown
from paypalserversdk.models.checkout_payment_intent import CheckoutPaymentIntent
from paypalserversdk.models.money import Money
from paypalserversdk.models.order_request import OrderRequest
from paypalserversdk.models.payment_source import PaymentSource
from paypalserversdk.models.paypal_wallet import PaypalWallet
from paypalserversdk.models.paypal_wallet_experience_context import (
    PaypalWalletExperienceContext,
)
from paypalserversdk.models.purchase_unit_request import PurchaseUnitRequest
from paypalserversdk.models.refund_request import RefundRequest
from paypalserversdk.paypal_serversdk_client import PaypalServersdkClient

from paymux.channels.paypal import protocol
from paymux.channels.paypal.sandbox import Sandbox
from paymux.kit import clock
from tests.fixtures.servers import serve


def _order_request(invoice: str, value: str, currency: str) -> OrderRequest:
    context = PaypalWalletExperienceContext(
        return_url="https://shop.example/return", cancel_url="https://shop.example/return"
    )
    return OrderRequest(
        intent=CheckoutPaymentIntent.CAPTURE,
        purchase_units=[PurchaseUnitRequest(
            amount=AmountWithBreakdown(currency_code=currency, value=value),
            reference_id="default", custom_id=invoice, invoice_id=invoice, description="Book",
        )],
        payment_source=PaymentSource(paypal=PaypalWallet(experience_context=context)),
    )  # fmt: skip


def test_official_sdk_against_the_sandbox() -> None:
    sandbox = Sandbox()
    with serve(sandbox.app) as url:
        creds = sandbox.provision(url)
        client = PaypalServersdkClient(
            client_credentials_auth_credentials=ClientCredentialsAuthCredentials(
                o_auth_client_id=creds["client_id"], o_auth_client_secret=creds["client_secret"]
            ),
            environment=Environment.SANDBOX,
        )
        client.config.environments = {Environment.SANDBOX: {Server.DEFAULT: url}}
        invoice = "att_" + uuid.uuid4().hex[:16]
        request_id = protocol.request_id("order", invoice)
        created = client.orders.create_order({
            "body": _order_request(invoice, "12.34", "USD"), "paypal_request_id": request_id,
        }).body  # fmt: skip
        assert created.status == "PAYER_ACTION_REQUIRED"
        approve = next(link.href for link in created.links if link.rel == "payer-action")
        # The SDK's replay under the same request id gets the same order.
        replay = client.orders.create_order({
            "body": _order_request(invoice, "12.34", "USD"), "paypal_request_id": request_id,
        }).body  # fmt: skip
        assert replay.id == created.id
        r = httpx.post(approve, data={"result": "approve"})
        assert r.status_code == 303
        shown = client.orders.get_order({"id": created.id}).body
        assert shown.status == "APPROVED"
        assert shown.purchase_units[0].custom_id == invoice
        captured = client.orders.capture_order({
            "id": created.id, "paypal_request_id": protocol.request_id("capture", created.id),
        }).body  # fmt: skip
        assert captured.status == "COMPLETED"
        capture = captured.purchase_units[0].payments.captures[0]
        assert capture.status == "COMPLETED"
        assert (capture.amount.currency_code, capture.amount.value) == ("USD", "12.34")
        refund = client.payments.refund_captured_payment({
            "capture_id": capture.id, "paypal_request_id": "paymux-refund-r1",
            "prefer": "return=representation",
            "body": RefundRequest(amount=Money(currency_code="USD", value="2.34"),
                                  invoice_id="r1", custom_id=invoice),
        }).body  # fmt: skip
        assert refund.status == "COMPLETED" and refund.amount.value == "2.34"
        fetched = client.payments.get_refund({"refund_id": refund.id}).body
        assert fetched.status == "COMPLETED" and fetched.invoice_id == "r1"
        day = clock.now().date()
        start = dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)
        found = client.transaction_search.search_transactions({
            "start_date": protocol.rfc3339(start),
            "end_date": protocol.rfc3339(start + dt.timedelta(days=1)),
            "fields": "transaction_info",
        }).body  # fmt: skip
        codes = [(d.transaction_info.transaction_event_code,
                  d.transaction_info.transaction_amount.value)
                 for d in found.transaction_details]  # fmt: skip
        # the day's withdrawal to the bank: what the sale left after its fee and the refund
        net = 1234 - 1234 * 349 // 10_000 - 234
        assert codes == [("T0006", "12.34"), ("T1107", "-2.34"), ("T0400", f"-{net / 100:.2f}")]
        # A currency PayPal does not take, and decimals where PayPal takes none, are refused.
        for value, currency, issue in (("100", "KRW", "CURRENCY_NOT_SUPPORTED"),
                                       ("100.50", "JPY", "DECIMAL_PRECISION")):  # fmt: skip
            with pytest.raises(ErrorException) as exc:
                client.orders.create_order({
                    "body": _order_request("att_" + uuid.uuid4().hex[:8], value, currency),
                })  # fmt: skip
            assert exc.value.response_code == 422
            assert exc.value.details[0].issue == issue and exc.value.debug_id


def test_adapter_order_body_matches_the_sdk_serialisation() -> None:
    """Our create body carries the fields the SDK's OrderRequest serialises, with the same
    names and shapes (the adapter adds user_action/shipping_preference)."""
    ours = {
        "intent": "CAPTURE",
        "purchase_units": [{"reference_id": "default", "custom_id": "att_1",
                            "invoice_id": "att_1", "description": "Book",
                            "amount": protocol.money(1234, "USD")}],
        "payment_source": {"paypal": {"experience_context": {
            "return_url": "https://shop.example/return",
            "cancel_url": "https://shop.example/return"}}},
    }  # fmt: skip
    sdk = json.loads(APIHelper.json_serialize(_order_request("att_1", "12.34", "USD")))
    assert sdk["intent"] == ours["intent"]
    assert sdk["purchase_units"] == ours["purchase_units"]
    context = sdk["payment_source"]["paypal"]["experience_context"]
    assert context["return_url"] == context["cancel_url"] == "https://shop.example/return"
    # The SDK fills in defaults we also set (to other values): same field names.
    assert {"shipping_preference", "user_action"} <= set(PaypalWalletExperienceContext._names)
