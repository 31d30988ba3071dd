"""Money is an integer count of minor units plus an ISO 4217 currency. No floats."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from paymux.kit.errors import InvalidRequest

# ISO 4217 minor-unit exponents for the currencies we accept.
EXPONENTS: dict[str, int] = {
    "CNY": 2, "HKD": 2, "MOP": 2, "TWD": 2, "USD": 2, "EUR": 2, "GBP": 2, "AUD": 2, "CAD": 2,
    "SGD": 2, "NZD": 2, "CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2, "THB": 2, "MYR": 2, "PHP": 2,
    "INR": 2, "AED": 2, "SAR": 2, "RUB": 2, "BRL": 2, "MXN": 2, "ZAR": 2, "PLN": 2,
    "CZK": 2, "HUF": 2, "ILS": 2, "TRY": 2,
    "JPY": 0, "KRW": 0, "VND": 0, "IDR": 2, "CLP": 0, "ISK": 0, "UGX": 0,
    "KWD": 3, "BHD": 3, "JOD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip

MAX_AMOUNT = 10**15


def exponent(currency: str) -> int:
    try:
        return EXPONENTS[currency]
    except KeyError:
        raise InvalidRequest(
            "unsupported_currency", f"Currency {currency!r} is not supported.", param="currency"
        ) from None


def check_amount(amount: int, currency: str) -> None:
    """Reject amounts a payment can never carry (non-positive, absurdly large)."""
    exponent(currency)
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidRequest("invalid_amount", "Amount must be an integer.", param="amount")
    if amount <= 0 or amount > MAX_AMOUNT:
        raise InvalidRequest(
            "invalid_amount", "Amount must be a positive number of minor units.", param="amount"
        )


def bps_of(amount: int, bps: int) -> int:
    """``bps`` basis points of ``amount`` minor units, rounded half up to the minor unit (how
    the channels and our fee rules round a percentage)."""
    return (amount * bps + 5_000) // 10_000


def to_major(amount: int, currency: str) -> str:
    """Minor units → decimal string in major units (``1999, CNY`` → ``"19.99"``)."""
    exp = exponent(currency)
    value = Decimal(amount).scaleb(-exp)
    return f"{value:.{exp}f}"


def from_major(text: str, currency: str) -> int:
    """Decimal string in major units → minor units; rejects extra precision."""
    exp = exponent(currency)
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {text!r}") from None
    minor = value.scaleb(exp)
    if minor != minor.to_integral_value(rounding=ROUND_HALF_EVEN):
        raise ValueError(f"amount {text!r} has more precision than {currency} allows")
    return int(minor)
