"""UnionPay 全渠道 (ACP 5.1.0): codec, adapter and sandbox, checked against each other and against
UnionPay's published rules. No official Python SDK exists on PyPI, so the oracle is the official
ACP SDK's documented construction, rebuilt independently here with ``hashlib``/``cryptography``:

- signing string: fields but ``signature`` sorted by key, ``k=v`` joined by ``&`` (ACP Java SDK
  ``SDKUtil.coverMap2String``; PHP demo ``ksort`` + ``urldecode(http_build_query())``);
- signature: SHA256withRSA over the lower-case hex SHA-256 of that string (``sha256X16`` +
  ``signBySoft256``; PHP ``openssl_sign(hash('sha256', …), …, 'sha256')``);
- ``signPubKeyCert`` trusted only if it chains to the middle and root certificates, is valid
  and its CN's third ``@`` part is ``中国银联股份有限公司`` (``CertUtil.verifyCertificate``);
- ``fileContent`` = base64(zlib(file)) (``SDKUtil.inflater`` with ``new Inflater(false)``).

Everything runs in-process: the adapter reaches the sandbox through ``httpx.ASGITransport``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import io
import zipfile
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from paymux.channels import base, registry
from paymux.channels.base import (
    BusinessError,
    ChannelPaymentStatus,
    ChannelRefundStatus,
    CreatePayment,
    CreateRefund,
    InvalidNotification,
    NextActionType,
    RetryableError,
    UnknownOutcome,
)
from paymux.channels.sandbox_kit import NotifyMode, Outcome, RefundOutcome, RefundScript, Script
from paymux.channels.unionpay import protocol as p
from paymux.channels.unionpay.adapter import UnionPayAdapter, UnionPayCredentials
from paymux.channels.unionpay.sandbox import Sandbox, issue, new_key, pem
from paymux.kit import clock
from paymux.kit.ids import new_id

BASE = "http://up.test"
NOTIFY_URL = "http://merchant.test/notify"


# ---------------------------------------------------------------- fixtures
@dataclass
class Receiver:
    got: list[bytes] = field(default_factory=list)
    status: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = FastAPI()

        @self.app.post("/notify")
        async def notify(request: Request) -> PlainTextResponse:
            self.got.append(await request.body())
            return PlainTextResponse("ok", status_code=self.status.pop(0) if self.status else 200)


@dataclass
class Env:
    sandbox: Sandbox
    receiver: Receiver
    client: httpx.AsyncClient
    creds: dict[str, Any]
    adapter: UnionPayAdapter
    clients: list[httpx.AsyncClient]

    def adapter_with(self, timeout: float = 2.0, **overrides: Any) -> UnionPayAdapter:
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.sandbox.app), timeout=timeout
        )
        self.clients.append(http)
        return UnionPayAdapter({**self.creds, **overrides}, http)


@contextlib.asynccontextmanager
async def open_env() -> AsyncIterator[Env]:
    receiver = Receiver()
    notifier = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app), timeout=2.0)
    sandbox = Sandbox(http=notifier, time_scale=0.001, hold_timeout_seconds=1.0)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app), base_url=BASE)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app), timeout=2.0)
    creds = sandbox.provision(BASE)
    env = Env(
        sandbox, receiver, client, creds, UnionPayAdapter(creds, http), [notifier, client, http]
    )
    try:
        yield env
    finally:
        await sandbox.core.aclose()
        for c in env.clients:
            await c.aclose()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with open_env() as environment:
        yield environment


def request(
    method: str = "unionpay_qr", *, amount: int = 1999, expires_in: float = 900
) -> CreatePayment:
    return CreatePayment(
        out_trade_no=new_id("att"), method=method, amount=amount, currency="CNY",
        subject="Coffee 咖啡", notify_url=NOTIFY_URL,
        expires_at=clock.now() + dt.timedelta(seconds=expires_in),
        return_url="http://merchant.test/return",
    )  # fmt: skip


async def wait_for(predicate: Callable[[], bool], rounds: int = 500) -> None:
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def pay(env: Env, out_trade_no: str, result: str = "pay") -> None:
    r = await env.client.post(
        f"/_sandbox/orders/{p.order_id(out_trade_no)}/pay", json={"result": result}
    )
    assert r.status_code == 200, r.text


def oracle_signature_ok(fields: dict[str, str], public_key: Any) -> bool:
    """Independent check of UnionPay's signature rule (see the module docstring)."""
    text = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "signature")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest().encode()
    try:
        public_key.verify(
            base64.b64decode(fields["signature"]), digest, padding.PKCS1v15(), hashes.SHA256()
        )
    except Exception:
        return False
    return True


def form_fields(html: str) -> dict[str, str]:
    import re

    return {
        k: __import__("html").unescape(v)
        for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', html)
    }


# ---------------------------------------------------------------- codec
def test_signing_string_is_the_sdks_construction() -> None:
    fields = {"txnType": "01", "accessType": "0", "signature": "x", "merId": "777290058110048",
              "backUrl": "http://a/b?c=d&e=f", "bizType": "000201"}  # fmt: skip
    # Sorted by key (ASCII), raw values (no URL encoding), ``signature`` left out.
    assert p.signing_string(fields) == (
        "accessType=0&backUrl=http://a/b?c=d&e=f&bizType=000201&merId=777290058110048&txnType=01"
    )
    assert (
        p.digest_hex(fields)
        == hashlib.sha256(p.signing_string(fields).encode()).hexdigest().encode()
    )
    assert p.filter_blank({"a": " 1 ", "b": "", "c": "  ", "d": None}) == {"a": "1"}


def test_sign_matches_the_independent_oracle() -> None:
    key = new_key()
    signed = p.sign({"version": "5.1.0", "orderId": "att01abc", "blank": ""}, key, "68759585097")
    assert signed["certId"] == "68759585097" and "blank" not in signed
    assert oracle_signature_ok(signed, key.public_key())
    assert p.verify_signature(signed, key.public_key())
    tampered = {**signed, "orderId": "att01abd"}
    assert not oracle_signature_ok(tampered, key.public_key())
    assert not p.verify_signature(tampered, key.public_key())
    assert not p.verify_signature({**signed, "signature": "not base64!"}, key.public_key())


def test_order_ids_times_and_amounts() -> None:
    our = new_id("att")
    number = p.order_id(our)
    assert p.ORDER_ID.match(number) and "_" not in number and p.our_id(number) == our
    assert p.order_id(new_id("re")).startswith("re")
    for bad in ("att-123", "att_short", "ATT_01", "x" * 60):
        with pytest.raises(p.ProtocolError):
            p.order_id(bad)
    made = p.id_time(our)
    assert abs((clock.now() - made).total_seconds()) < 60
    assert p.txn_time_of(our) == p.format_time(made)
    utc = dt.datetime(2024, 3, 20, 16, 30, 5, tzinfo=dt.UTC)
    assert p.format_time(utc) == "20240321003005"
    assert p.parse_time("20240321003005") == utc
    assert p.to_amount(1999) == "1999" and p.parse_amount("1999") == 1999
    for bad_amount in ("19.99", "-1", "", "１"):
        with pytest.raises(p.ProtocolError):
            p.parse_amount(bad_amount)
    assert p.map_orig_resp_code("00") is ChannelPaymentStatus.succeeded
    assert p.map_orig_resp_code("A6") is ChannelPaymentStatus.succeeded
    assert p.map_orig_resp_code("05") is ChannelPaymentStatus.pending
    assert p.map_orig_resp_code("01") is ChannelPaymentStatus.failed


def test_raw_response_parsing_like_the_sdk() -> None:
    cert = "-----BEGIN CERTIFICATE-----\r\nMII=\r\n-----END CERTIFICATE-----"
    text = "respCode=00&signature=ab+c/d==&reserved={a=1&b=2}&list=[x&y]&empty="
    text += f"&signPubKeyCert={cert}"
    fields = p.parse_response(text)
    assert fields["signature"] == "ab+c/d=="
    assert fields["reserved"] == "{a=1&b=2}" and fields["list"] == "[x&y]"
    assert fields["empty"] == "" and fields["signPubKeyCert"].endswith("-----END CERTIFICATE-----")
    assert p.parse_response("{" + text + "}") == fields
    with pytest.raises(p.ProtocolError):
        p.parse_response("a=1&a=2")
    with pytest.raises(p.ProtocolError):
        p.parse_response("=1")


def test_file_content_is_base64_zlib() -> None:
    data = b"PK\x03\x04 zip bytes"
    text = p.encode_file_content(data)
    assert zlib.decompress(base64.b64decode(text)) == data  # java.util.zip.Inflater(false)
    assert p.decode_file_content(text) == data
    with pytest.raises(p.ProtocolError):
        p.decode_file_content(base64.b64encode(b"not zlib").decode())


def test_zm_records_are_fixed_width() -> None:
    line = p.zm_line({"tradeCode": "S22", "orderId": "att01", "txnAmt": "000000001999",
                      "merId": "777290058110048"})  # fmt: skip
    assert len(line) == sum(p.ZM_WIDTHS) + len(p.ZM_WIDTHS) - 1
    assert line[:4] == b"S22 "
    row = p.parse_zm_record(line)
    assert row["tradeCode"] == "S22" and row["orderId"] == "att01"
    assert row["txnAmt"] == "000000001999" and row["merId"] == "777290058110048"


# ---------------------------------------------------------------- certificates
def chain() -> tuple[Any, Any, Any, Any]:
    root_key, middle_key = new_key(), new_key()
    from paymux.channels.unionpay.sandbox import _name

    root = issue(root_key.public_key(), _name("R"), _name("R"), root_key, ca=True)
    middle = issue(middle_key.public_key(), _name("M"), root.subject, root_key, ca=True)
    return root_key, root, middle_key, middle


def test_signer_certificate_rules() -> None:
    from paymux.channels.unionpay.sandbox import _name

    _, root, middle_key, middle = chain()
    now = clock.now()
    key = new_key()

    def cert(cn: str, signer: Any = middle_key, issuer: Any = None, **kw: Any) -> str:
        return pem(issue(key.public_key(), _name(cn), (issuer or middle).subject, signer,
                         ca=False, **kw))  # fmt: skip

    good = cert(f"041@Z12@{p.UNIONPAY_NAME}@00000001")
    assert p.check_signer(good, middle=middle, root=root, now=now).public_numbers() == (
        key.public_key().public_numbers()
    )
    test_env = cert("041@Z12@00040000:SIGN@00000062")
    with pytest.raises(p.ProtocolError, match="not UnionPay"):
        p.check_signer(test_env, middle=middle, root=root, now=now)
    p.check_signer(test_env, middle=middle, root=root, now=now, validate_cn=False)
    with pytest.raises(p.ProtocolError, match="not UnionPay"):
        p.check_signer(
            cert("041@Z12@某商户@1"), middle=middle, root=root, now=now, validate_cn=False
        )
    with pytest.raises(p.ProtocolError, match="not UnionPay"):
        p.check_signer(cert(p.UNIONPAY_NAME), middle=middle, root=root, now=now)
    expired = cert(f"041@Z12@{p.UNIONPAY_NAME}@1", not_before=now - dt.timedelta(days=30), days=10)
    with pytest.raises(p.ProtocolError, match="validity"):
        p.check_signer(expired, middle=middle, root=root, now=now)
    _, other_root, other_middle_key, other_middle = chain()
    foreign = cert(f"041@Z12@{p.UNIONPAY_NAME}@1", signer=other_middle_key, issuer=other_middle)
    with pytest.raises(p.ProtocolError, match="chain"):
        p.check_signer(foreign, middle=middle, root=root, now=now)
    with pytest.raises(p.ProtocolError, match="middle"):
        p.check_signer(good, middle=other_middle, root=root, now=now)
    with pytest.raises(p.ProtocolError):
        p.check_signer("not a certificate", middle=middle, root=root, now=now)


def test_credentials(env: Env) -> None:
    creds = UnionPayCredentials.model_validate(env.creds)
    assert creds.gateway == BASE and creds.file_gateway == f"{BASE}/filedownload/"
    signing = p.load_pfx(env.creds["sign_cert_pfx"], env.creds["sign_cert_password"])
    merchant = env.sandbox.merchants[env.creds["mer_id"]]
    assert signing.cert_id == merchant.cert_id == str(merchant.certificate.serial_number)
    for change in ({"sign_cert_password": "wrong"}, {"sign_cert_pfx": "bm9wZQ=="},
                   {"root_cert": "x"}, {"mer_id": "short"},
                   {"file_gateway": "https://filedownload.95516.com/"}):  # fmt: skip
        with pytest.raises(base.InvalidCredentials):
            UnionPayAdapter({**env.creds, **change}, env.client)
    factory = registry.get("unionpay")
    assert factory.methods == {"unionpay_gateway", "unionpay_wap", "unionpay_qr",
                               "unionpay_barcode"}  # fmt: skip
    assert factory.currencies == {"CNY"}
    assert "gateway.95516.com" in factory.production_hosts
    ok = env.adapter.ack(True)
    assert ok.status_code == 200 and env.adapter.ack(False).status_code >= 400


# ---------------------------------------------------------------- payments
async def test_qr_round_trip(env: Env) -> None:
    req = request("unionpay_qr")
    created = await env.adapter.create_payment(req)
    assert created.next_action is not None
    assert created.next_action.type is NextActionType.qr_code
    assert created.next_action.code_url == f"{BASE}/_sandbox/pay/{p.order_id(req.out_trade_no)}"
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.pending
    await pay(env, req.out_trade_no)
    await wait_for(lambda: len(env.receiver.got) == 1)
    fields = dict(parse_qsl(env.receiver.got[0].decode()))
    assert oracle_signature_ok(fields, env.sandbox.signer.public_key())
    note = await env.adapter.parse_notification({}, env.receiver.got[0])
    assert note.payment is not None and note.payment.out_trade_no == req.out_trade_no
    assert note.payment.status is ChannelPaymentStatus.succeeded and note.payment.amount == 1999
    paid = await env.adapter.query_payment(req.out_trade_no)
    assert paid.status is ChannelPaymentStatus.succeeded
    assert paid.channel_trade_no == note.payment.channel_trade_no and paid.amount == 1999


@pytest.mark.parametrize(("method", "channel_type"), [("unionpay_gateway", "07"),
                                                       ("unionpay_wap", "08")])  # fmt: skip
async def test_front_form_round_trip(env: Env, method: str, channel_type: str) -> None:
    req = request(method)
    created = await env.adapter.create_payment(req)
    assert created.next_action is not None and created.next_action.type is NextActionType.form
    html = created.next_action.html or ""
    assert f'action="{BASE}{p.FRONT_PATH}"' in html and "submit()" in html
    form = form_fields(html)
    assert form["channelType"] == channel_type and form["bizType"] == "000201"
    assert form["txnType"] == "01" and form["txnSubType"] == "01"
    assert form["orderId"] == p.order_id(req.out_trade_no) and form["txnAmt"] == "1999"
    assert form["currencyCode"] == "156" and form["version"] == "5.1.0"
    assert form["payTimeout"] == p.format_time(req.expires_at)
    assert form["txnTime"] == p.txn_time_of(req.out_trade_no)
    cert_key = p.load_pfx(env.creds["sign_cert_pfx"], "000000").certificate.public_key()
    assert oracle_signature_ok(form, cert_key)
    # Before the browser posts the form, UnionPay has no such order.
    assert (
        await env.adapter.query_payment(req.out_trade_no)
    ).status is ChannelPaymentStatus.not_found
    r = await env.client.post(p.FRONT_PATH, data=form)
    assert r.status_code == 303 and r.headers["location"].endswith(form["orderId"])
    page = await env.client.get(r.headers["location"])
    assert page.status_code == 200 and "19.99" in page.text
    r = await env.client.post(p.FRONT_PATH, data={**form, "txnAmt": "1"})
    assert r.status_code == 400 and "11" in r.text  # tampered: signature fails
    await pay(env, req.out_trade_no)
    await wait_for(lambda: len(env.receiver.got) == 1)
    note = await env.adapter.parse_notification({}, env.receiver.got[0])
    assert note.payment is not None and note.payment.status is ChannelPaymentStatus.succeeded


async def test_decline_sends_no_notification_and_query_says_failed(env: Env) -> None:
    req = request()
    await env.adapter.create_payment(req)
    await pay(env, req.out_trade_no, "decline")
    await asyncio.sleep(0.05)
    assert env.receiver.got == []
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.failed and state.channel_code == "01"
    assert state.failure_code == "payment_declined"


async def test_pay_after_pay_timeout_fails(env: Env, clock: Any) -> None:
    req = request("unionpay_gateway", expires_in=60)
    created = await env.adapter.create_payment(req)
    assert created.next_action is not None
    await env.client.post(p.FRONT_PATH, data=form_fields(created.next_action.html or ""))
    clock.advance(120)
    await pay(env, req.out_trade_no)
    assert (await env.adapter.query_payment(req.out_trade_no)).status is ChannelPaymentStatus.failed


async def test_notifications_retry_until_http_200(env: Env) -> None:
    env.receiver.status.extend([500, 503])
    req = request()
    await env.adapter.create_payment(req)
    await pay(env, req.out_trade_no)
    await wait_for(lambda: len(env.receiver.got) == 3)
    assert env.receiver.got[0] == env.receiver.got[2]  # the same message, resent


async def test_duplicate_and_delayed_notifications(env: Env) -> None:
    env.sandbox.core.add_script(Script(outcome=Outcome.succeed, notify=NotifyMode.duplicate))
    req = request()
    await env.adapter.create_payment(req)
    await wait_for(lambda: len(env.receiver.got) == 2)
    first, second = [await env.adapter.parse_notification({}, b) for b in env.receiver.got]
    assert first.event_key == second.event_key  # the inbox keeps one
    env.sandbox.core.add_script(
        Script(outcome=Outcome.succeed, notify=NotifyMode.delayed, delay=20)
    )
    late = request()
    await env.adapter.create_payment(late)
    await wait_for(lambda: len(env.receiver.got) == 3)
    note = await env.adapter.parse_notification({}, env.receiver.got[2])
    assert note.payment is not None and note.payment.out_trade_no == late.out_trade_no


async def test_forged_notifications_rejected(env: Env) -> None:
    req = request()
    await env.adapter.create_payment(req)
    await pay(env, req.out_trade_no)
    await wait_for(lambda: len(env.receiver.got) == 1)
    genuine = dict(parse_qsl(env.receiver.got[0].decode()))

    async def rejected(fields: dict[str, str], code: str) -> None:
        with pytest.raises(InvalidNotification) as caught:
            await env.adapter.parse_notification({}, urlencode(fields).encode())
        assert caught.value.code == code, caught.value

    await rejected({**genuine, "txnAmt": "1"}, "bad_signature")
    await rejected({k: v for k, v in genuine.items() if k != "signature"}, "unsigned")
    # A self-made "UnionPay" certificate with a valid signature under it: does not chain.
    impostor = Sandbox()
    forged = impostor.signed({k: v for k, v in genuine.items()
                              if k not in ("signature", "signPubKeyCert", "certId")})  # fmt: skip
    await rejected(forged, "bad_signature")
    # Signed by a merchant certificate of the same CA: chains, but is not UnionPay's.
    merchant_creds = env.sandbox.provision(BASE)
    signing = p.load_pfx(merchant_creds["sign_cert_pfx"], "000000")
    own = {k: v for k, v in genuine.items() if k not in ("signature", "certId")}
    own["signPubKeyCert"] = pem(signing.certificate)
    await rejected(p.sign(own, signing.key, signing.cert_id), "bad_signature")
    # Genuinely signed, but for another merchant.
    other = env.sandbox.signed({**{k: v for k, v in genuine.items()
                                   if k not in ("signature", "signPubKeyCert", "certId")},
                                "merId": merchant_creds["mer_id"]})  # fmt: skip
    await rejected(other, "bad_signature")
    await rejected({"a": "1"}, "unsigned")
    with pytest.raises(InvalidNotification):
        await env.adapter.parse_notification({}, b"\xff\xfe")


async def test_expired_unionpay_certificate_rejected(env: Env, clock: Any) -> None:
    req = request()
    await env.adapter.create_payment(req)
    await pay(env, req.out_trade_no)
    await wait_for(lambda: len(env.receiver.got) == 1)
    clock.advance(3650 * 86400)
    with pytest.raises(InvalidNotification, match="validity"):
        await env.adapter.parse_notification({}, env.receiver.got[0])


async def test_create_error_and_timeout(env: Env) -> None:
    env.sandbox.core.add_script(Script(outcome=Outcome.create_error))
    req = request()
    with pytest.raises(UnknownOutcome):
        await env.adapter.create_payment(req)
    assert (
        await env.adapter.query_payment(req.out_trade_no)
    ).status is ChannelPaymentStatus.not_found
    env.sandbox.core.add_script(Script(outcome=Outcome.create_timeout))
    slow = request()
    with pytest.raises(UnknownOutcome):
        await env.adapter_with(timeout=0.2).create_payment(slow)
    assert (
        await env.adapter.query_payment(slow.out_trade_no)
    ).status is ChannelPaymentStatus.pending


async def test_unverifiable_answer_is_unknown(env: Env) -> None:
    impostor = Sandbox()
    creds = {**env.creds, "middle_cert": pem(impostor.authority.middle),
             "root_cert": pem(impostor.authority.root)}  # fmt: skip
    adapter = env.adapter_with(
        **{k: v for k, v in creds.items() if k in ("middle_cert", "root_cert")}
    )
    with pytest.raises(UnknownOutcome) as caught:
        await adapter.create_payment(request())
    assert caught.value.code == "unverifiable_response"


async def test_bad_requests_are_refused(env: Env) -> None:
    with pytest.raises(BusinessError):
        await env.adapter.create_payment(CreatePayment(
            out_trade_no="has-dash-not-ours", method="unionpay_qr", amount=1, currency="CNY",
            subject="x", notify_url=NOTIFY_URL, expires_at=clock.now(),
        ))  # fmt: skip
    with pytest.raises(BusinessError):
        await env.adapter.create_payment(CreatePayment(
            out_trade_no=new_id("att"), method="unionpay_qr", amount=1, currency="USD",
            subject="x", notify_url=NOTIFY_URL, expires_at=clock.now(),
        ))  # fmt: skip
    req = request()
    await env.adapter.create_payment(req)
    with pytest.raises(BusinessError) as caught:  # the same orderId again
        await env.adapter.create_payment(req)
    assert caught.value.code == "unionpay_12"


async def test_close(env: Env) -> None:
    req = request()
    await env.adapter.create_payment(req)
    await env.adapter.close_payment(req.out_trade_no)
    await pay(env, req.out_trade_no)
    with pytest.raises(BusinessError) as caught:
        await env.adapter.close_payment(req.out_trade_no)
    assert caught.value.code == "already_paid"
    await env.adapter.close_payment(new_id("att"))  # unknown at UnionPay: nothing to close


# ---------------------------------------------------------------- refunds
async def paid(env: Env, amount: int = 1000) -> tuple[CreatePayment, str]:
    req = request(amount=amount)
    await env.adapter.create_payment(req)
    await pay(env, req.out_trade_no)
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.channel_trade_no
    return req, state.channel_trade_no


def refund_of(req: CreatePayment, query_id: str | None, amount: int) -> CreateRefund:
    return CreateRefund(
        out_refund_no=new_id("re"), out_trade_no=req.out_trade_no, channel_trade_no=query_id,
        amount=amount, total_amount=req.amount, currency="CNY", notify_url=NOTIFY_URL,
    )  # fmt: skip


async def test_refund_succeeds_and_notifies(env: Env) -> None:
    req, query_id = await paid(env)
    await wait_for(lambda: len(env.receiver.got) == 1)
    state = await env.adapter.create_refund(refund_of(req, query_id, 400))
    assert state.status is ChannelRefundStatus.succeeded and state.amount == 400
    await wait_for(lambda: len(env.receiver.got) == 2)
    fields = dict(parse_qsl(env.receiver.got[1].decode()))
    assert fields["txnType"] == "04" and fields["origQryId"] == query_id
    note = await env.adapter.parse_notification({}, env.receiver.got[1])
    assert note.refund is not None and note.reference == req.out_trade_no
    assert note.refund.out_refund_no == state.out_refund_no
    assert note.refund.status is ChannelRefundStatus.succeeded and note.refund.amount == 400
    # Without the queryId the adapter finds it first.
    again = await env.adapter.create_refund(refund_of(req, None, 600))
    assert again.status is ChannelRefundStatus.succeeded
    with pytest.raises(BusinessError):  # nothing left
        await env.adapter.create_refund(refund_of(req, query_id, 1))


async def test_refund_delayed_fail_refused_and_unknown(env: Env) -> None:
    req, query_id = await paid(env)
    core = env.sandbox.core
    core.add_refund_script(RefundScript(outcome=RefundOutcome.delayed, delay=30))
    late = await env.adapter.create_refund(refund_of(req, query_id, 100))
    assert late.status is ChannelRefundStatus.pending
    await wait_for(lambda: core.get_refund(env.creds["mer_id"], p.order_id(late.out_refund_no))
                   is not None and core.refunds_of(core.find(p.order_id(req.out_trade_no)))[0]
                   .status.value == "succeeded")  # fmt: skip
    done = await env.adapter.query_refund(late.out_refund_no, req.out_trade_no)
    assert done.status is ChannelRefundStatus.succeeded
    core.add_refund_script(RefundScript(outcome=RefundOutcome.fail, delay=1))
    failing = await env.adapter.create_refund(refund_of(req, query_id, 100))
    await asyncio.sleep(0.05)
    failed = await env.adapter.query_refund(failing.out_refund_no, req.out_trade_no)
    assert failed.status is ChannelRefundStatus.failed and failed.failure_code == "01"
    core.add_refund_script(RefundScript(outcome=RefundOutcome.refuse))
    with pytest.raises(BusinessError) as caught:
        await env.adapter.create_refund(refund_of(req, query_id, 100))
    assert caught.value.code == "unionpay_61"
    core.add_refund_script(RefundScript(outcome=RefundOutcome.create_error))
    lost = refund_of(req, query_id, 100)
    with pytest.raises(UnknownOutcome):
        await env.adapter.create_refund(lost)
    gone = await env.adapter.query_refund(lost.out_refund_no, req.out_trade_no)
    assert gone.status is ChannelRefundStatus.not_found


# ---------------------------------------------------------------- bills
async def test_bill_download(env: Env) -> None:
    req, query_id = await paid(env, amount=1999)
    await env.adapter.create_refund(refund_of(req, query_id, 500))
    today = clock.now().astimezone(p.CHINA).date()
    rows = await bill_records(env, today)
    by_code = {row["tradeCode"]: row for row in rows}
    assert by_code["S22"]["orderId"] == p.order_id(req.out_trade_no)
    assert by_code["S22"]["txnAmt"] == "000000001999" and by_code["S22"]["queryId"] == query_id
    assert by_code["S30"]["origQryId"] == query_id and by_code["S30"]["txnAmt"] == "000000000500"
    assert await bill_records(env, today - dt.timedelta(days=3)) == []


async def bill_records(env: Env, day: dt.date) -> list[dict[str, str]]:
    """The ZM records of a day's bill (``fileTransfer`` answers a day not yet over too)."""
    now = p.format_time(clock.now())
    form = env.adapter._signed(
        p.FILE_TRANSFER, settleDate=f"{day:%m%d}", txnTime=now, fileType=p.BILL_FILE_TYPE
    )
    answer = await env.adapter._post(env.adapter.credentials.file_gateway, form)
    archive = zipfile.ZipFile(io.BytesIO(p.decode_file_content(answer["fileContent"])))
    (name,) = archive.namelist()
    return [p.parse_zm_record(line) for line in archive.read(name).splitlines() if line.strip()]


async def test_statement_is_the_days_zm_records_normalised(env: Env) -> None:
    """``statement(day)``: S22 → payment with ``merFee`` (D: charged), S30 → negative refund
    (C: fee returned), ``orderId`` mapped back to our ids; today's file is not made yet."""
    shifted = clock.OffsetClock()
    previous = clock.set_clock(shifted)
    china = dt.timezone(dt.timedelta(hours=8))
    try:
        # Forward, not back: the sandbox's certificates start now.
        day = dt.datetime.now(china).date() + dt.timedelta(days=1)
        shifted.offset = dt.datetime.combine(day, dt.time(12), tzinfo=china) - clock.now()
        req, query_id = await paid(env, amount=1999)
        refund = refund_of(req, query_id, 500)
        state = await env.adapter.create_refund(refund)
        shifted.advance(86400)
        lines = await env.adapter.statement(day)
        with pytest.raises(RetryableError) as not_ready:
            await env.adapter.statement(day + dt.timedelta(days=1))
    finally:
        clock.set_clock(previous)
    assert not_ready.value.code == "statement_not_ready"
    got = sorted((x.kind, x.reference, x.out_trade_no, x.channel_trade_no, x.channel_refund_no,
                  x.amount, x.fee) for x in lines)  # fmt: skip
    assert got == sorted([
        (base.StatementLineKind.payment, req.out_trade_no, req.out_trade_no, query_id, None,
         1999, 12),
        (base.StatementLineKind.refund, refund.out_refund_no, None, query_id,
         state.channel_refund_no, -500, -3),
    ])  # fmt: skip
    assert all(x.occurred_at and x.occurred_at.astimezone(china).date() == day for x in lines)
    assert p.parse_fee(p.fee_field(12)) == 12 and p.parse_fee(p.fee_field(-3)) == -3
