"""The customer-facing error catalogue: a payment's ``failure_code`` (the channel-neutral
:class:`~paymux.channels.base.FailureCategory`, or a gateway code) → what the customer is told and
what they can do next. Messages are English msgids translated by the Babel catalogues
(``paymux/locale``); fraud-type declines are deliberately generic so the page never tells a
fraudster which check tripped."""

from __future__ import annotations

from dataclasses import dataclass


def N_(message: str) -> str:
    """Marks a message for extraction; translated when the page is rendered."""
    return message


@dataclass(frozen=True)
class CustomerError:
    message: str
    next_step: str
    retry_other_method: bool = True


_GENERIC = CustomerError(
    N_("The payment could not be completed."),
    N_("Try another payment method, or go back to the shop and try again later."),
)

CATALOGUE: dict[str, CustomerError] = {
    "customer_declined": CustomerError(
        N_("The payment was cancelled before it was completed."),
        N_("You have not been charged. Choose a payment method to try again."),
    ),
    "card_declined": CustomerError(
        N_("Your card was declined by its bank."),
        N_("Try another card or payment method, or contact your bank."),
    ),
    "insufficient_funds": CustomerError(
        N_("The balance of the account or card is not enough for this payment."),
        N_("Top up the balance or choose another payment method."),
    ),
    "wallet_not_allowed": CustomerError(
        N_("Your balance cannot be used for this payment."),
        N_("Choose another payment method."),
    ),
    "authentication_failed": CustomerError(
        N_("The card's security verification was not completed."),
        N_("Try again and complete the verification, or choose another payment method."),
    ),
    "payment_declined": _GENERIC,
    # Fraud-type declines: never say why.
    "risk_declined": _GENERIC,
    "fraud_suspected": _GENERIC,
    "expired": CustomerError(
        N_("This payment has expired."),
        N_("Go back to the shop to place the order again."),
        retry_other_method=False,
    ),
    "closed": CustomerError(
        N_("This payment was closed by the shop."),
        N_("Go back to the shop if you still want to buy."),
        retry_other_method=False,
    ),
}


def customer_error(code: str | None) -> CustomerError:
    """The catalogue entry for ``code``; unknown codes get the generic message."""
    return CATALOGUE.get(code or "", _GENERIC)
