"""The attributes a risk rule may read, per event type: name, CEL type, meaning, feature family.

A rule names attributes directly (``amount > 500000 && customer.is_new``); this module is the
one place that says which names exist for which event, what CEL type each has and which
feature family computes it, so that :mod:`paymux.risk.rules` can refuse an unknown name when a
rule is saved and the engine can compute only the families an active rule reads.

Names are flat (``amount``, ``count_payments_device_1h``) except the ``customer`` group, read
as ``customer.<field>``. The velocity and link names are generated from their windows ×
subjects × measures (:data:`VELOCITY_WINDOWS`, :data:`SUBJECTS`, :data:`MEASURES`,
:data:`LINKS`), never listed by hand, so a new window or subject appears everywhere at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class EventType(StrEnum):
    """The points in a money movement where risk rules run."""

    payment_create = "payment.create"
    """A payment is being created: after validation and idempotency, before routing."""
    payment_succeeded = "payment.succeeded"
    """A payment has succeeded: post-payment rules on counters and links."""
    refund_create = "refund.create"
    """A refund is being created."""
    payout_create = "payout.create"
    """A withdrawal (payout to a bank or wallet account) is being created."""
    wallet_transfer = "wallet.transfer"
    """Money moves between two wallet accounts."""


class CelType(StrEnum):
    """The CEL type of an attribute's value (what a rule compares it with)."""

    int = "int"
    """A signed 64-bit integer; money is always an int of minor units."""
    double = "double"
    """A 64-bit float; never money."""
    string = "string"
    """A string."""
    bool = "bool"
    """A boolean."""


class Family(StrEnum):
    """Which feature computation produces an attribute: the engine runs a family only when an
    active rule reads one of its attributes."""

    request = "request"
    """Read from the request itself (amount, method, IP and its region, device, SKU)."""
    time = "time"
    """The request's local time (hour, weekday)."""
    customer = "customer"
    """The customer's record (age, KYC level, first payment)."""
    velocity = "velocity"
    """Counts and sums over a time window from bucketed counters."""
    link = "link"
    """Distinct counts linking subjects (customers per device, …)."""


@dataclass(frozen=True, slots=True)
class Attribute:
    """One readable name: its CEL type, one-line meaning, family and a sample value.

    ``example`` is a realistic value of the right type: documentation shows it and rule
    validation runs every new rule on it.
    """

    name: str
    type: CelType
    family: Family
    description: str
    example: int | float | str | bool


# -- windows × subjects × measures ------------------------------------------------------------

VELOCITY_WINDOWS: tuple[str, ...] = ("10m", "1h", "24h", "7d", "30d")
"""The windows of every velocity counter, as they appear at the end of its name."""

LINK_WINDOWS: tuple[str, ...] = ("1h", "24h", "7d", "30d")
"""The windows of the link (distinct-count) features."""

_ALL_EVENTS = frozenset(EventType)
_PAYMENT_EVENTS = frozenset({EventType.payment_create, EventType.payment_succeeded})
_MONEY_OUT = frozenset({EventType.payout_create, EventType.wallet_transfer})


@dataclass(frozen=True, slots=True)
class Subject:
    """What a counter is kept per (a customer, a device, …) and the events that know it."""

    name: str
    description: str
    events: frozenset[EventType]


SUBJECTS: tuple[Subject, ...] = (
    Subject("customer", "the same customer", _ALL_EVENTS),
    Subject("device", "the same device id", _ALL_EVENTS),
    Subject("ip", "the same client IP", _ALL_EVENTS),
    # The payer's account at the channel (openid, buyer id, card fingerprint) is known only
    # once the channel has answered, and for money out it is the destination account.
    Subject(
        "payer_account",
        "the same payer account at the channel",
        frozenset({EventType.payment_succeeded, EventType.refund_create}) | _MONEY_OUT,
    ),
    Subject("sku", "the same product SKU", _PAYMENT_EVENTS | {EventType.refund_create}),
    Subject("merchant", "the same merchant", _ALL_EVENTS),
)
"""Every subject a velocity counter can be kept per."""


@dataclass(frozen=True, slots=True)
class Measure:
    """What a counter counts: ``noun`` is the middle of its name, ``sum`` whether an amount
    sum is kept besides the count, ``events`` the event types that read it."""

    noun: str
    description: str
    sum: bool
    events: frozenset[EventType]


MEASURES: tuple[Measure, ...] = (
    Measure("payments", "payments created", True, _PAYMENT_EVENTS),
    Measure("declined", "payments declined by the channel", False, _PAYMENT_EVENTS),
    Measure("blocked", "requests blocked by risk rules", False, _ALL_EVENTS),
    Measure("refunds", "refunds created", True, _PAYMENT_EVENTS | {EventType.refund_create}),
    Measure("payouts", "payouts (withdrawals) created", True, _MONEY_OUT),
    Measure("transfers", "wallet transfers sent", True, _MONEY_OUT),
)
"""Every measure a velocity counter keeps."""


@dataclass(frozen=True, slots=True)
class Link:
    """A distinct count of ``counted`` seen with one ``per`` within a window."""

    counted: str
    per: str
    description: str
    events: frozenset[EventType]


LINKS: tuple[Link, ...] = (
    Link("customers", "device", "distinct customers seen on this device", _ALL_EVENTS),
    Link("devices", "customer", "distinct devices this customer used", _ALL_EVENTS),
    Link("customers", "ip", "distinct customers seen from this IP", _ALL_EVENTS),
    Link(
        "customers",
        "payer_account",
        "distinct customers paying with this payer account",
        frozenset({EventType.payment_succeeded}) | _MONEY_OUT,
    ),
    Link(
        "payer_accounts",
        "customer",
        "distinct payer accounts this customer used",
        frozenset({EventType.payment_succeeded}) | _MONEY_OUT,
    ),
)
"""Every link feature, each kept for every :data:`LINK_WINDOWS` window."""


def _velocity(event: EventType) -> list[Attribute]:
    out: list[Attribute] = []
    for measure in MEASURES:
        if event not in measure.events:
            continue
        aggregates = ("count", "sum") if measure.sum else ("count",)
        for subject in SUBJECTS:
            if event not in subject.events:
                continue
            for window in VELOCITY_WINDOWS:
                for agg in aggregates:
                    what = "number" if agg == "count" else "amount (minor units, all currencies)"
                    out.append(
                        Attribute(
                            f"{agg}_{measure.noun}_{subject.name}_{window}",
                            CelType.int,
                            Family.velocity,
                            f"{what} of {measure.description} for {subject.description} "
                            f"in the last {window}",
                            3 if agg == "count" else 120000,
                        )
                    )
    return out


def _links(event: EventType) -> list[Attribute]:
    return [
        Attribute(
            f"distinct_{link.counted}_per_{link.per}_{window}",
            CelType.int,
            Family.link,
            f"{link.description} in the last {window}",
            2,
        )
        for link in LINKS
        if event in link.events
        for window in LINK_WINDOWS
    ]


# -- request, time and customer attributes ----------------------------------------------------

_R, _T, _C = Family.request, Family.time, Family.customer
_I, _S, _B = CelType.int, CelType.string, CelType.bool

_COMMON: tuple[Attribute, ...] = (
    Attribute("amount", _I, _R, "the amount in minor units of its currency", 19900),
    Attribute("currency", _S, _R, "ISO 4217 currency code, upper case", "CNY"),
    Attribute("merchant_id", _S, _R, "the merchant the request is for", "mer_sample"),
    Attribute("ip", _S, _R, "the client's IP address (IPv4 or IPv6, as text)", "203.0.113.7"),
    Attribute("ip_region", _S, _R, "the IP's region code from the offline database", "CN-44"),
    Attribute("device_id", _S, _R, "the client's device id as the merchant sent it", "dev_s"),
    Attribute("user_agent", _S, _R, "the client's User-Agent header", "Mozilla/5.0"),
    Attribute("local_hour", _I, _T, "the hour 0–23 in the merchant's time zone", 14),
    Attribute("weekday", _I, _T, "the ISO weekday in the merchant's time zone, 1=Mon…7=Sun", 3),
    Attribute("customer.id", _S, _C, "the merchant's customer id", "cus_sample"),
    Attribute("customer.is_new", _B, _C, "whether the customer was first seen < 24 h ago", True),
    Attribute("customer.age_days", _I, _C, "days since the customer was first seen", 12),
    Attribute("customer.kyc_level", _I, _C, "the customer's KYC level, 0 = none", 1),
    Attribute(
        "customer.has_paid", _B, _C, "whether the customer has a succeeded payment before", True
    ),
)

_PAYMENT: tuple[Attribute, ...] = (
    Attribute("method", _S, _R, "the payment method (wechat_native, alipay_page, …)", "wx_qr"),
    Attribute("channel", _S, _R, "the channel asked for, or the one used once known", "wechat"),
    Attribute("sku", _S, _R, "the product SKU the merchant sent", "sku_sample"),
    Attribute("quantity", _I, _R, "the number of items bought", 1),
)

_EXTRA: Mapping[EventType, tuple[Attribute, ...]] = {
    EventType.payment_create: _PAYMENT,
    EventType.payment_succeeded: (
        *_PAYMENT,
        Attribute("payer_account", _S, _R, "the payer's account at the channel", "o_sample"),
    ),
    EventType.refund_create: (
        *_PAYMENT,
        Attribute("payment_amount", _I, _R, "the refunded payment's amount, minor units", 19900),
        Attribute("refunded_amount", _I, _R, "the amount already refunded on it, minor units", 0),
        Attribute("payment_age_hours", _I, _R, "hours since the payment succeeded", 5),
    ),
    EventType.payout_create: (
        Attribute("payee_account", _S, _R, "the destination account (masked or hashed)", "acc_s"),
        Attribute("payee_type", _S, _R, "the destination kind: bank_card, wallet, …", "bank"),
        Attribute("balance", _I, _R, "the wallet's available balance, minor units", 500000),
    ),
    EventType.wallet_transfer: (
        Attribute("counterparty_id", _S, _R, "the receiving wallet's customer id", "cus_other"),
        Attribute("balance", _I, _R, "the sending wallet's available balance, minor units", 5000),
    ),
}


def _catalogue(event: EventType) -> Mapping[str, Attribute]:
    attrs = [*_COMMON, *_EXTRA[event], *_velocity(event), *_links(event)]
    by_name = {a.name: a for a in attrs}
    assert len(by_name) == len(attrs), f"duplicate attribute names for {event}"
    return MappingProxyType(by_name)


ATTRIBUTES: Mapping[EventType, Mapping[str, Attribute]] = MappingProxyType(
    {event: _catalogue(event) for event in EventType}
)
"""Every event type's attributes by name (read-only)."""

GROUPS: frozenset[str] = frozenset(
    name.split(".", 1)[0] for attrs in ATTRIBUTES.values() for name in attrs if "." in name
)
"""The names that are groups of attributes (``customer``), never values themselves."""


def attributes_for(event: EventType | str) -> Mapping[str, Attribute]:
    """The attributes of ``event`` by name; raises ``ValueError`` for an unknown event type."""
    return ATTRIBUTES[EventType(event)]


def families(event: EventType | str, names: set[str] | frozenset[str]) -> frozenset[Family]:
    """The feature families the engine must compute so that every one of ``names`` has a value."""
    attrs = attributes_for(event)
    return frozenset(attrs[name].family for name in names)
