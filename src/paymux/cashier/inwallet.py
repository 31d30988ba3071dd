"""Paying inside the WeChat and Alipay apps: the payer's identity from the channel's silent web
OAuth (WeChat ``snsapi_base`` → ``openid``, Alipay ``auth_base`` → ``buyer_id``), then the
wallet's JS bridge launches the JSAPI payment (``sdk_wechat_jsapi.html``,
``sdk_alipay_jsapi.html`` and ``static/bridge.js``); and, for every SDK step, the channel
sandbox's stand-in of the wallet app (:class:`~paymux.channels.base.SdkStandIn`).

The OAuth round trip:

1. ``GET /pay/{id}/oauth/start?method=…`` — the method must be one the cashier offers now and
   need a payer id the payment lacks. A routing candidate for it that can do the OAuth
   (:class:`~paymux.channels.base.PayerAuthCapable`) is picked; a short-lived cookie
   (path ``/pay/{id}/oauth``) records ``nonce.method.account.expiry`` and the ``state`` sent
   to the channel is the HMAC of the payment id and that cookie (64 hex characters: WeChat
   takes ``[a-zA-Z0-9]{,128}``), so it is unguessable, bound to this payment and this browser.
2. ``GET /pay/{id}/oauth/return?code|auth_code=…&state=…`` — the state is checked against the
   cookie (then dropped: one use), the code exchanged with the same account, and the payer id
   handed to :func:`paymux.cashier.service.choose`. A wrong state, a bad or reused code, a
   channel that does not answer: an explained page, nothing changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from paymux.cashier import ordering, service
from paymux.channel_accounts import service as channel_service
from paymux.channels import base, registry
from paymux.kit import clock
from paymux.kit.errors import InvalidRequest, NotFound, PaymuxError, UpstreamError
from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import RuntimeDep
from paymux.payments.models import Payment
from paymux.payments.repository import PaymentRepository
from paymux.routing import service as routing
from paymux.runtime import Runtime
from paymux.web import SecurityPolicy, Site, wants_html

log = structlog.get_logger(__name__)

HERE = Path(__file__).resolve().parent
site = Site("cashier", [HERE / "templates"])
router = APIRouter(tags=["cashier"], route_class=IdempotentRoute, include_in_schema=False)

COOKIE = "paymux_wallet_oauth"
STATE_SECONDS = 600
"""How long a started OAuth may take before the customer must start again."""
_CUSTOMER = ("customer",)


# ------------------------------------------------------------------ who needs the OAuth
def _request(payment: Payment, method: str) -> base.PaymentRequest:
    return base.PaymentRequest(
        method=method, amount=payment.amount, currency=payment.currency,
        subject=payment.subject, description=payment.description, client_ip=payment.client_ip,
        customer=dict(payment.customer or {}),
    )  # fmt: skip


def payer_needed(payment: Payment, method: str) -> bool:
    """``method`` cannot be opened until the payer is identified: every channel offering it
    refuses the payment for a missing ``customer`` field (WeChat JSAPI's ``openid``, Alipay
    JSAPI's ``buyer_id``)."""
    refused = registry.refusals(_request(payment, method))
    channels = registry.channels_for_method(method)
    return bool(channels) and len(refused) == len(channels) and all(
        problem.param.startswith(_CUSTOMER) for problem in refused.values()
    )  # fmt: skip


async def _auth_candidates(rt: Runtime, payment: Payment, method: str) -> list[str]:
    """The payment's routing candidates for ``method`` (accounts of its app and mode), best
    first, leaving out the payer problem the OAuth is about to solve."""
    problems = registry.refusals(_request(payment, method))
    refused = {
        channel: problem for channel, problem in problems.items()
        if not problem.param.startswith((*_CUSTOMER, "client_ip"))
    }  # fmt: skip
    async with rt.db.read() as session:
        try:
            plan = await routing.plan(
                session, app_id=payment.app_id, livemode=payment.livemode, method=method,
                currency=payment.currency, amount=payment.amount,
                customer=dict(payment.customer or {}), metadata=dict(payment.metadata_ or {}),
                refusals=refused,
            )  # fmt: skip
        except InvalidRequest:
            return []
    return [choice.account_id for choice in plan.decision.order]


async def _authenticator(
    rt: Runtime, payment: Payment, account_id: str
) -> base.PayerAuthCapable | None:
    async with rt.db.read() as session:
        account = await channel_service.account_of(session, account_id)
    if account.app_id != payment.app_id or (account.mode == "live") != payment.livemode:
        return None  # never another app's or the other mode's account
    return base.payer_auth_of(channel_service.adapter_for(rt.vault, account, rt.channel_http))


# ------------------------------------------------------------------ state
def _key(rt: Runtime) -> bytes:
    return hmac.new(rt.settings.master_key_bytes, b"paymux cashier oauth state", "sha256").digest()


def state_for(rt: Runtime, payment_id: str, cookie: str) -> str:
    """The ``state`` of one OAuth round trip: HMAC of the payment and the browser's cookie."""
    return hmac.new(_key(rt), f"{payment_id}|{cookie}".encode(), hashlib.sha256).hexdigest()


def new_cookie(method: str, account_id: str) -> str:
    expires = int(clock.now().timestamp()) + STATE_SECONDS
    return f"{secrets.token_urlsafe(18)}.{method}.{account_id}.{expires}"


def check_state(
    rt: Runtime, payment_id: str, cookie: str | None, state: str | None
) -> tuple[str, str] | None:
    """(method, account id) of the OAuth this browser started for this payment, if ``state``
    is the one it was sent with and it has not expired; else None."""
    if not cookie or not state:
        return None
    if not hmac.compare_digest(state_for(rt, payment_id, cookie), state):
        return None
    parts = cookie.split(".")
    if len(parts) != 4 or not parts[3].isdigit():
        return None
    if int(parts[3]) < int(clock.now().timestamp()):
        return None
    return parts[1], parts[2]


def _cookie_path(payment_id: str) -> str:
    return f"/pay/{payment_id}/oauth"


# ------------------------------------------------------------------ the routes
def _explain(
    request: Request, payment_id: str, exc: PaymuxError, *, retry_method: str | None = None
) -> Response:
    """The explained page (browsers) or the machine-readable error; nothing was changed."""
    if not wants_html(request):
        raise exc
    ctx = {"payment_id": payment_id, "reference": f"{payment_id} · {exc.code}",
           "code": exc.code, "retry_method": retry_method}  # fmt: skip
    response = site.render(request, "sdk_wallet_oauth_failed.html", ctx,
                           status_code=exc.status_code)  # fmt: skip
    response.delete_cookie(COOKIE, path=_cookie_path(payment_id))
    return response


async def _open_payment(rt: Runtime, payment_id: str) -> Payment | None:
    async with rt.db.read() as session:
        return await PaymentRepository(session).get_public(payment_id)


def _return_uri(rt: Runtime, payment_id: str) -> str:
    return f"{rt.settings.public_url.rstrip('/')}/pay/{payment_id}/oauth/return"


@router.get("/pay/{payment_id}/oauth/start", response_model=None)
async def oauth_start(
    request: Request, payment_id: str, rt: RuntimeDep, method: str = ""
) -> Response:
    """Send the browser to the channel's silent OAuth for ``method``'s payer id."""
    ua = request.headers.get("user-agent", "")
    cashier = await service.view(rt, payment_id, user_agent=ua)
    if cashier is None:
        return _explain(request, payment_id, NotFound("payment", payment_id))
    payment = cashier.payment
    if method not in {o.method for o in cashier.options} or not payer_needed(payment, method):
        exc = InvalidRequest("method_unavailable", f"{method!r} needs no payer sign-in here.",
                             param="method")  # fmt: skip
        return _explain(request, payment_id, exc)
    for account_id in await _auth_candidates(rt, payment, method):
        auth = await _authenticator(rt, payment, account_id)
        if auth is None:
            continue
        cookie = new_cookie(method, account_id)
        try:
            url = auth.payer_authorize_url(
                redirect_uri=_return_uri(rt, payment_id), state=state_for(rt, payment_id, cookie)
            )
        except base.ChannelError as exc:  # this account cannot (e.g. no AppSecret): the next
            log.info("payer_auth_not_possible", account=account_id, code=exc.code)
            continue
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(
            COOKIE, cookie, max_age=STATE_SECONDS, path=_cookie_path(payment_id), httponly=True,
            samesite="lax", secure=urlsplit(rt.settings.public_url).scheme == "https",
        )  # fmt: skip
        return response
    nobody = InvalidRequest("payer_auth_unavailable", f"No account can identify {method}'s payer.")
    return _explain(request, payment_id, nobody)


@router.get("/pay/{payment_id}/oauth/return", response_model=None)
async def oauth_return(request: Request, payment_id: str, rt: RuntimeDep) -> Response:
    """The channel sends the browser back with a code: check the state, exchange the code for
    the payer id, open the payment's order for that payer, and show the payment."""
    query = request.query_params
    started = check_state(rt, payment_id, request.cookies.get(COOKIE), query.get("state"))
    if started is None:
        exc = InvalidRequest("oauth_state_invalid",
                             "The sign-in does not belong to this payment or has expired.",
                             param="state")  # fmt: skip
        return _explain(request, payment_id, exc)
    method, account_id = started
    payment = await _open_payment(rt, payment_id)
    if payment is None:
        return _explain(request, payment_id, NotFound("payment", payment_id))
    auth = await _authenticator(rt, payment, account_id)
    if auth is None:
        unknown = InvalidRequest("oauth_state_invalid", "Unknown account.", param="state")
        return _explain(request, payment_id, unknown)
    try:
        code = query.get("code") or query.get("auth_code") or ""
        identity = await auth.exchange_payer_code(code)
    except base.BusinessError as exc:
        log.info("payer_code_refused", payment=payment_id, code=exc.code)
        why = "code_invalid" if exc.code == "invalid_code" else exc.code.removeprefix("oauth_")
        error: PaymuxError = InvalidRequest(
            f"oauth_{why}", "The wallet did not confirm the payer.", param="code"
        )
        return _explain(request, payment_id, error, retry_method=method)
    except base.ChannelError as exc:
        log.info("payer_code_exchange_failed", payment=payment_id, code=exc.code)
        error = UpstreamError("channel_unavailable", "The wallet could not be reached.")
        return _explain(request, payment_id, error, retry_method=method)
    try:
        ua = request.headers.get("user-agent", "")
        payer = {identity.field: identity.value}
        client_ip = request.client.host if request.client else None
        await service.choose(rt, payment_id, method, user_agent=ua, payer=payer,
                             client_ip=client_ip, payer_account=account_id)  # fmt: skip
    except PaymuxError as exc:
        return _explain(request, payment_id, exc)
    response = RedirectResponse(f"/pay/{payment_id}", status_code=303)
    response.delete_cookie(COOKIE, path=_cookie_path(payment_id))
    return response


# ------------------------------------------------------------------ helpers of the pay page
def auto_start(cashier: service.CashierView) -> str | None:
    """Where a cashier opened inside a wallet app goes at once: the OAuth of its first method
    when that method needs a payer id the payment lacks (no list to click through first)."""
    if not cashier.options or not ordering.in_wallet(cashier.environment):
        return None
    first = cashier.options[0].method
    if not payer_needed(cashier.payment, first):
        return None
    return f"/pay/{cashier.payment.id}/oauth/start?method={first}"


async def stand_in(rt: Runtime, payment: Payment) -> base.SdkStandIn | None:
    """The channel sandbox's stand-in of the wallet app for the payment's SDK step, if the
    account is on a sandbox (a live account has none)."""
    action = payment.next_action or {}
    if action.get("type") != "sdk_params" or not payment.channel_account_id:
        return None
    async with rt.db.read() as session:
        account = await channel_service.account_of(session, payment.channel_account_id)
    capable = base.sdk_stand_in_of(channel_service.adapter_for(rt.vault, account, rt.channel_http))
    if capable is None or not payment.method:
        return None
    return capable.sdk_stand_in(payment.method, dict(action.get("params") or {}))


def policy_for(request: Request, sdk: base.SdkStandIn | None) -> SecurityPolicy | None:
    """The page's CSP when the stand-in script comes from another origin than the page."""
    if sdk is None or not sdk.script_url:
        return None
    script = urlsplit(sdk.script_url)
    origin = f"{script.scheme}://{script.netloc}"
    if origin == f"{request.url.scheme}://{request.url.netloc}":
        return None
    policy = site.policy
    return dataclasses.replace(policy, extra_script_origins=(*policy.extra_script_origins, origin))
