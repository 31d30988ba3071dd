"""Store codes: create and change them, and turn a customer's amount into a cashier payment."""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import money
from paymux.kit.errors import Conflict, InvalidRequest, NotFound, PaymuxError
from paymux.kit.ids import new_id, token
from paymux.merchants.repository import MerchantRepository
from paymux.payments import intake
from paymux.payments import service as payment_service
from paymux.payments.models import Payment
from paymux.payments.repository import PaymentRepository
from paymux.payments.schemas import PaymentCreate
from paymux.runtime import Runtime
from paymux.store_codes.models import StoreCode
from paymux.store_codes.repository import StoreCodeRepository
from paymux.web.i18n import N_

FORM_TOKEN = re.compile(r"^[A-Za-z0-9_-]{24}$")
"""A form token is what :func:`new_form_token` makes; it becomes the payment's out_trade_no."""

OUT_TRADE_NO_PREFIX = "sc-"

# What the customer is told (English msgids; the amount page shows them translated).
AMOUNT_MISSING = N_("Enter the amount to pay.")
AMOUNT_NOT_A_NUMBER = N_("The amount must be a number, such as 12.50.")
AMOUNT_TOO_PRECISE = N_("The amount has more decimal places than the currency allows.")
AMOUNT_OUT_OF_RANGE = N_("The amount must be greater than zero and within the payment limit.")
FORM_EXPIRED = N_("This form is no longer valid. Please enter the amount again.")
CANNOT_PAY = N_("This payment cannot be made right now. Please try again later or ask the store.")
CUSTOMER_MESSAGES = frozenset(
    (AMOUNT_MISSING, AMOUNT_NOT_A_NUMBER, AMOUNT_TOO_PRECISE, AMOUNT_OUT_OF_RANGE, FORM_EXPIRED)
)


def customer_message(exc: PaymuxError) -> str:
    """The msgid the amount page shows for a refusal: the amount's own reasons as they are,
    anything payment creation refuses (no channel, limits) as one generic message."""
    return exc.message if exc.message in CUSTOMER_MESSAGES else CANNOT_PAY


def url_of(public_url: str, store_code: StoreCode) -> str:
    """The public page a printed code opens (any wallet or browser can scan it)."""
    return f"{public_url.rstrip('/')}/s/{store_code.code}"


def new_form_token() -> str:
    """One per rendering of the amount page: submitting it twice makes one payment."""
    return token("", 18)  # 24 url-safe characters


async def create(
    session: AsyncSession, *, app_id: str, livemode: bool, name: str, store_id: str,
    amount: int | None, currency: str, active: bool,
) -> StoreCode:  # fmt: skip
    if amount is not None:
        money.check_amount(amount, currency)
    else:
        money.exponent(currency)
    store_code = StoreCode(
        id=new_id("sc"), app_id=app_id, livemode=livemode, code=token("", 24), name=name,
        store_id=store_id, amount=amount, currency=currency, active=active,
    )  # fmt: skip
    StoreCodeRepository(session).add(store_code)
    await session.flush()
    return store_code


async def get(
    session: AsyncSession, *, app_id: str, livemode: bool, store_code_id: str
) -> StoreCode:
    store_code = await StoreCodeRepository(session).get(app_id, livemode, store_code_id)
    if store_code is None:
        raise NotFound("store_code", store_code_id)
    return store_code


async def update(
    session: AsyncSession, *, app_id: str, livemode: bool, store_code_id: str,
    active: bool | None = None, name: str | None = None,
) -> StoreCode:  # fmt: skip
    store_code = await get(session, app_id=app_id, livemode=livemode, store_code_id=store_code_id)
    if active is not None:
        store_code.active = active
    if name is not None:
        store_code.name = name
    await session.flush()
    return store_code


async def active_by_code(session: AsyncSession, code: str) -> StoreCode | None:
    store_code = await StoreCodeRepository(session).by_code(code)
    return store_code if store_code is not None and store_code.active else None


def parse_amount(store_code: StoreCode, text: str | None) -> int:
    """The amount to charge: the code's fixed one, or the customer's, in major units (``19.99``)
    with no more decimals than the currency has, positive and within the payment limit."""
    if store_code.amount is not None:
        return store_code.amount
    cleaned = (text or "").strip()
    if not cleaned or len(cleaned) > 20:
        raise InvalidRequest("invalid_amount", AMOUNT_MISSING, param="amount")
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", cleaned):
        raise InvalidRequest("invalid_amount", AMOUNT_NOT_A_NUMBER, param="amount")
    try:
        amount = money.from_major(cleaned, store_code.currency)
    except ValueError:
        raise InvalidRequest("invalid_amount", AMOUNT_TOO_PRECISE, param="amount") from None
    try:
        money.check_amount(amount, store_code.currency)
    except InvalidRequest:
        raise InvalidRequest("invalid_amount", AMOUNT_OUT_OF_RANGE, param="amount") from None
    return amount


async def pay(rt: Runtime, code: str, *, amount_text: str | None, form_token: str) -> Payment:
    """Create the cashier payment of one submitted amount page (or find the one this very form
    already made). Raises NotFound for an unknown or inactive code, InvalidRequest for a bad
    amount or form token, or whatever payment creation refuses."""
    if not FORM_TOKEN.fullmatch(form_token):
        raise InvalidRequest("invalid_form_token", FORM_EXPIRED, param="token")
    out_trade_no = OUT_TRADE_NO_PREFIX + form_token
    async with rt.db.read() as session:
        store_code = await active_by_code(session, code)
        if store_code is None:
            raise NotFound("store_code", code)
        earlier = await PaymentRepository(session).find_by_out_trade_no(
            store_code.app_id, store_code.livemode, out_trade_no
        )
        if earlier is not None:  # the same form sent again
            return earlier
        app = await MerchantRepository(session).get_app(store_code.app_id)
        assert app is not None  # a foreign key
    amount = parse_amount(store_code, amount_text)
    req = PaymentCreate(
        amount=amount, currency=store_code.currency, method="cashier",
        out_trade_no=out_trade_no, subject=store_code.name,
        metadata={"store_code": store_code.id, "store_id": store_code.store_id},
    )  # fmt: skip
    try:
        payment, _ = await intake.create(
            rt, app_id=store_code.app_id, merchant_id=app.merchant_id,
            livemode=store_code.livemode, req=req,
        )  # fmt: skip
    except Conflict as exc:
        if exc.code != payment_service.DUPLICATE:
            raise
        async with rt.db.read() as session:  # the same form sent twice at once
            raced = await PaymentRepository(session).find_by_out_trade_no(
                store_code.app_id, store_code.livemode, out_trade_no
            )
        if raced is None:
            raise
        return raced
    return payment
