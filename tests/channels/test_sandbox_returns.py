"""The sandboxes' customer pages send the customer back the way the channel does: WeChat H5's
``redirect_url`` (appended to ``h5_url`` by the adapter) after paying or giving up, a Cancel that
never lands on the success return; a closed order cannot be paid there; and a closed order can be
scripted to succeed late (``/_sandbox/orders/{no}/late_success``)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from paymux.channels.base import ChannelPaymentStatus, NextActionType
from tests.channels import test_wechatpay as channel_tests
from tests.channels.test_wechatpay import BASE, Env, payment, until

BACK = "http://gw.test/pay/pay_123/return?x=1&y=2"
env = channel_tests.env


async def _h5(env: Env) -> tuple[str, str]:
    created = payment("wechat_h5", client_ip="203.0.113.9", return_url=BACK)
    result = await env.adapter.create_payment(created)
    assert result.next_action is not None and result.next_action.type is NextActionType.redirect
    url = result.next_action.url or ""
    assert parse_qs(urlsplit(url).query)["redirect_url"] == [BACK]  # urlencoded once
    return created.out_trade_no, url


async def test_h5_pays_and_comes_back_through_redirect_url(env: Env) -> None:
    no, url = await _h5(env)
    page = await env.http.get(url)
    assert page.status_code == 200 and 'name="redirect_url"' in page.text
    done = await env.http.post(url.split("?")[0], data={"result": "pay", "redirect_url": BACK})
    assert done.status_code == 303 and done.headers["location"] == BACK
    state = await env.adapter.query_payment(no)
    assert state.status is ChannelPaymentStatus.succeeded
    await until(lambda: len(env.receiver.received) == 1, "the notification")


async def test_h5_cancel_comes_back_unpaid(env: Env) -> None:
    no, url = await _h5(env)
    done = await env.http.post(url.split("?")[0], data={"result": "cancel", "redirect_url": BACK})
    assert done.status_code == 303 and done.headers["location"] == BACK
    assert (await env.adapter.query_payment(no)).status is ChannelPaymentStatus.pending
    bad = await env.http.post(url.split("?")[0], data={"result": "steal"})
    assert bad.status_code == 400
    assert (await env.adapter.query_payment(no)).status is ChannelPaymentStatus.pending


async def test_a_closed_order_cannot_be_paid_on_the_page_but_can_succeed_late(env: Env) -> None:
    created = payment()
    await env.adapter.create_payment(created)
    await env.adapter.close_payment(created.out_trade_no)
    page = await env.http.get(f"{BASE}/_sandbox/pay/{created.out_trade_no}")
    assert 'id="pay"' not in page.text and "closed" in page.text
    await env.http.post(f"{BASE}/_sandbox/pay/{created.out_trade_no}", data={"result": "pay"})
    state = await env.adapter.query_payment(created.out_trade_no)
    assert state.status is ChannelPaymentStatus.closed
    # the scripted race: the customer's money lands after the close
    late = await env.http.post(f"{BASE}/_sandbox/orders/{created.out_trade_no}/late_success")
    assert late.json()["changed"] is True
    state = await env.adapter.query_payment(created.out_trade_no)
    assert state.status is ChannelPaymentStatus.succeeded and state.amount == 1999
    await until(lambda: len(env.receiver.received) == 1, "the late notification")
    again = await env.http.post(f"{BASE}/_sandbox/orders/{created.out_trade_no}/late_success")
    assert again.json()["changed"] is False
    missing = await env.http.post(f"{BASE}/_sandbox/orders/nope/late_success")
    assert missing.status_code == 404
