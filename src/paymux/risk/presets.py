"""Starter rule sets (presets): the rules a risk team of a given kind of shop would write first,
as data, with the lists they read and why each threshold is where it is.

A preset is never put in force by paymux: :func:`apply_preset` makes the lists it reads (empty)
where its owner's rules cannot read one of that name yet, and saves its rules as a **draft**
rule set through :func:`paymux.risk.rulesets.create_draft` — validated like any draft — for the
team to read, tune to its own traffic and publish. Applying it again makes another draft and
reuses the lists.

Two presets, covering between them every rule family of issue 14 (a test holds them to it):

- ``card_shop`` (发卡网): virtual goods delivered the moment they are paid (game top-ups, gift
  cards, memberships). The loss is instant and final, so the rules stop stolen accounts and
  cards being drained into resellable codes, card testing, and 套现 (cashing a credit line out
  through goods that resell at face value).
- ``group_buying`` (社区团购 / consignment): small grocery baskets through group leaders (团长)
  who earn commissions and withdraw them. The rules look for 刷单 (orders farmed to earn
  commissions, new-user coupons or sales rank), and for wallets used to move money: the
  withdrawal limits of :data:`paymux.risk.limits.LIMITS` as rules, per KYC level, for
  payouts and wallet transfers.

Amounts are in fen (CNY minor units): both kinds of shop sell in CNY. Velocity windows are
rolling (``_24h`` is the last 24 hours), where the payout policy counts a China calendar day.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit.errors import Conflict, NotFound
from paymux.risk import rulesets, service
from paymux.risk.attributes import EventType
from paymux.risk.limits import LIMITS, Limits
from paymux.risk.models import ListType, OnError, RiskList, RuleAction, RuleMode, RuleSet
from paymux.risk.repository import RiskListRepository
from paymux.risk.schemas import ListCreate, RuleIn, RuleSetCreate
from paymux.risk.service import Owner, _mode


@dataclass(frozen=True, slots=True)
class PresetList:
    """A list a preset's rules read: made empty when its owner's rules cannot read one of that
    name (the team fills it)."""

    name: str
    type: ListType
    description: str


@dataclass(frozen=True, slots=True)
class PresetRule:
    """One rule of a preset and ``why``: what it catches and why its threshold."""

    rule: RuleIn
    why: str


@dataclass(frozen=True, slots=True)
class Preset:
    """A starter rule set: its rules, the lists they read and the thresholds of the scores."""

    name: str
    version: int
    """Bumped when the preset's rules change; the draft's note says which was applied."""
    title: str
    description: str
    rules: tuple[PresetRule, ...]
    lists: tuple[PresetList, ...]
    review_score: int | None = None
    block_score: int | None = None

    @property
    def note(self) -> str:
        return f"preset {self.name} v{self.version}"


_PAY, _REFUND = EventType.payment_create, EventType.refund_create
_PAYOUT, _TRANSFER = EventType.payout_create, EventType.wallet_transfer
BANK_METHODS = ("unionpay_gateway", "unionpay_wap")
"""What high-value goods may still be paid with: UnionPay online banking (网银), where the
payer signs in to their own bank, so a stolen wallet balance or a card number alone cannot pay."""


def _rule(name: str, event: EventType, expression: str, action: RuleAction, why: str, *,
          score: int = 0, mode: RuleMode = RuleMode.active,
          restrict_methods: tuple[str, ...] | None = None,
          restrict_channels: tuple[str, ...] | None = None) -> PresetRule:  # fmt: skip
    methods = list(restrict_methods) if restrict_methods else None
    channels = list(restrict_channels) if restrict_channels else None
    return PresetRule(RuleIn(name=name, event=event, expression=expression, action=action,
                             score=score, mode=mode, restrict_methods=methods,
                             restrict_channels=channels), why)  # fmt: skip


_A = RuleAction

# -- the lists ---------------------------------------------------------------------------------

BLOCKED_REGIONS = PresetList("blocked_regions", ListType.region,
                             "Regions (ISO 3166: CN-XX, KP) no payment may come from.")  # fmt: skip
BLOCKED_IPS = PresetList("blocked_ips", ListType.ip,
                         "Addresses and networks (CIDR) seen in fraud.")  # fmt: skip
BLOCKED_DEVICES = PresetList("blocked_devices", ListType.device_id,
                             "Device ids seen in fraud or chargebacks.")  # fmt: skip
BLOCKED_CUSTOMERS = PresetList("blocked_customers", ListType.customer_id,
                               "Customer ids confirmed as stolen or abusive accounts.")  # fmt: skip
HIGH_VALUE_SKUS = PresetList("high_value_skus", ListType.sku,
                             "Goods that may only be paid through a bank (网银).")  # fmt: skip
DATACENTER_IPS = PresetList("datacenter_ips", ListType.ip,
                            "Hosting and cloud networks (CIDR): scripts.")  # fmt: skip
BLOCKED_PAYEES = PresetList("blocked_payee_accounts", ListType.payer_account,
                            "Bank or wallet accounts no withdrawal may go to (mules).")  # fmt: skip

# -- card_shop (发卡网) --------------------------------------------------------------------------

# fmt: off
# (a table of rules: one rule, its expression and its reason read best kept together)
CARD_SHOP = Preset(
    name="card_shop",
    version=1,
    title="Card shop (发卡网): virtual goods, instant delivery",
    description="Game top-ups, gift cards, memberships delivered as codes the moment they are "
    "paid: stops stolen accounts and cards being drained into resellable codes, card testing "
    "and 套现 through goods that resell at face value.",
    review_score=50,
    block_score=100,
    lists=(BLOCKED_REGIONS, BLOCKED_IPS, BLOCKED_DEVICES, BLOCKED_CUSTOMERS, HIGH_VALUE_SKUS),
    rules=(
        _rule("blocked_region", _PAY, 'ip_region in list("blocked_regions")', _A.block,
              "Payments from a region the team has blocked (sanctions, regions where the shop "
              "does not sell and fraud comes from)."),
        _rule("blocked_ip", _PAY, 'cidr_match(ip, list("blocked_ips"))', _A.block,
              "An address, or an address inside a network, seen in fraud: the list takes "
              "CIDR ranges, so a whole proxy farm is one item."),
        _rule("blocked_device", _PAY, 'device_id in list("blocked_devices")', _A.block,
              "A device seen in fraud: stolen accounts change, the phone often does not."),
        _rule("blocked_customer", _PAY, 'customer.id in list("blocked_customers")', _A.block,
              "An account the team confirmed as stolen or abusive."),
        _rule("large_order", _PAY, "amount > 500000", _A.review,
              "One order above ¥5,000: card-shop goods sell for ¥10–¥1,000, so this is rare "
              "for real buyers and the first thing a drained account buys."),
        _rule("very_large_order", _PAY, "amount > 2000000", _A.block,
              "One order above ¥20,000: the codes would be gone before any review; real "
              "resellers buying at this size are onboarded with higher limits of their own."),
        _rule("device_burst_10m", _PAY, "count_payments_device_10m >= 5", _A.challenge,
              "Five payments from one device within 10 minutes: scripted checkout or card "
              "testing. A challenge (captcha, SMS) stops a script and costs a person seconds."),
        _rule("customer_velocity_1h", _PAY, "count_payments_customer_1h >= 10", _A.review,
              "Ten payments by one customer within an hour: a person buys a few codes, a "
              "drained account buys until it is empty."),
        _rule("customer_spend_24h", _PAY, "sum_payments_customer_24h + amount > 3000000",
              _A.review, "More than ¥30,000 by one customer within 24 hours, this order "
              "included: six times the large-order line, spread over several orders."),
        _rule("night_order", _PAY, "local_hour >= 1 && local_hour < 6 && amount > 50000",
              _A.score, "Over ¥500 between 01:00 and 06:00 (the shop's time): stolen accounts "
              "are drained while their owners sleep. A score only: night owls buy too.",
              score=20),
        _rule("new_customer_large_order", _PAY, "customer.is_new && amount > 100000",
              _A.review, "Over ¥1,000 from a customer first seen within 24 hours: fraudsters "
              "register and spend at once; real buyers start small."),
        _rule("young_customer_large_order", _PAY,
              "customer.age_days < 7 && amount > 300000", _A.score,
              "Over ¥3,000 from a customer of less than a week: weaker than a new customer's "
              "first day, so a score that needs another signal to reach review.", score=30),
        _rule("shared_device", _PAY, "distinct_customers_per_device_24h >= 3", _A.review,
              "Three or more customers on one device within 24 hours: one person cycling "
              "through stolen or bought accounts (a family shares a phone with one or two)."),
        _rule("sku_burst", _PAY, "count_payments_sku_10m >= 50", _A.score,
              "Fifty payments for one SKU within 10 minutes: a leaked discount, or a ring "
              "turning stolen balances into the one code that resells best (套现). A score: a "
              "launch also sells fast.", score=40),
        _rule("high_value_bank_only", _PAY, 'sku in list("high_value_skus") || amount >= 1000000',
              _A.restrict, "Goods listed as high-value, and any order of ¥10,000 or more, may "
              "only be paid through online banking, where the payer signs in to their own bank: "
              "a stolen wallet or a card number alone cannot pay.",
              restrict_methods=BANK_METHODS),
        _rule("declines_on_device", _PAY, "count_declined_device_1h >= 3", _A.score,
              "Three channel declines on one device within an hour: card testing.", score=40),
        _rule("unverified_customer", _PAY, "customer.kyc_level == 0 && amount > 20000",
              _A.score, "Over ¥200 from a customer with no real-name verification: a small "
              "score that adds to the others.", score=15),
        _rule("instant_refund", _REFUND,
              "payment_age_hours < 1 && count_refunds_customer_24h >= 2", _A.review,
              "A third refund in a day asked within an hour of paying: the code was delivered "
              "and may be resold already (refund arbitrage, 套现)."),
        _rule("many_devices_per_customer", _PAY, "distinct_devices_per_customer_24h >= 4",
              _A.block, "One account on four devices within 24 hours: an account takeover "
              "sold on. Shadow: it is recorded, never decides, until the team has seen how "
              "often real customers hit it and switches it to active.",
              mode=RuleMode.shadow),
    ),
)
# fmt: on

# -- group_buying (社区团购 / consignment) -------------------------------------------------------


def _by_level(test: Callable[[Limits], str]) -> str:
    """``test`` of each KYC level's limits, for that level: the lowest level also covers a
    level below it, the highest one above it, so no level is without a limit."""
    levels = sorted(LIMITS)
    parts = []
    for n, level in enumerate(levels):
        op = "<=" if n == 0 else ">=" if n == len(levels) - 1 else "=="
        parts.append(f"(customer.kyc_level {op} {level} && {test(LIMITS[level])})")
    return " || ".join(parts)


def _levels(show: Callable[[Limits], int]) -> str:
    return ", ".join(f"level {level}: {show(LIMITS[level])}" for level in sorted(LIMITS))


def _kyc_rules(event: EventType, noun: str, what: str) -> tuple[PresetRule, ...]:
    """The payout policy's limits per KYC level as three block rules of ``event``: one
    ``noun`` (payouts, transfers) above the single limit, over the day's count, over the day's
    amount."""
    short = "payout" if noun == "payouts" else "transfer"
    # fmt: off
    return (
        _rule(f"{short}_over_kyc_limit", event, _by_level(lambda x: f"amount > {x.per_payout}"),
              _A.block, f"One {what} above its KYC level's single limit, as "
              f"paymux.risk.limits.LIMITS has it (fen; {_levels(lambda x: x.per_payout)})."),
        _rule(f"{short}_daily_count_kyc", event,
              _by_level(lambda x: f"count_{noun}_customer_24h >= {x.daily_count}"), _A.block,
              f"One {what} more than its KYC level allows in a day "
              f"({_levels(lambda x: x.daily_count)}); the policy's day is the China calendar "
              "day, this rule's the last 24 hours."),
        _rule(f"{short}_daily_amount_kyc", event,
              _by_level(lambda x: f"sum_{noun}_customer_24h + amount > {x.daily_amount}"),
              _A.block, f"A {what} that takes the day's total over its KYC level's daily "
              f"amount (fen; {_levels(lambda x: x.daily_amount)})."),
    )
    # fmt: on


# fmt: off
GROUP_BUYING = Preset(
    name="group_buying",
    version=1,
    title="Community group buying (社区团购) and consignment",
    description="Small grocery baskets through group leaders (团长) who earn commissions and "
    "withdraw them: finds 刷单 (orders farmed for commissions, coupons or rank), and wallets "
    "used to move money, with today's withdrawal limits per KYC level as rules.",
    review_score=50,
    block_score=100,
    lists=(BLOCKED_REGIONS, DATACENTER_IPS, HIGH_VALUE_SKUS, BLOCKED_PAYEES),
    rules=(
        _rule("blocked_region", _PAY, 'ip_region in list("blocked_regions")', _A.block,
              "Payments from a region the team has blocked: community group buying serves "
              "the cities it delivers to."),
        _rule("datacenter_ip", _PAY, 'cidr_match(ip, list("datacenter_ips"))', _A.score,
              "An order from a hosting or cloud network: order-farming scripts run there, "
              "shoppers do not (a score: a few corporate VPNs exit there too).", score=40),
        _rule("large_basket", _PAY, "amount > 300000", _A.review,
              "One basket above ¥3,000: group-buying baskets are ¥30–¥300 of groceries; a large "
              "one is a leader's farmed order or money passing through."),
        _rule("bulk_quantity", _PAY, "quantity >= 50", _A.review,
              "Fifty or more of one item in one order: a household does not, a 刷单 order "
              "inflating a product's sales does."),
        _rule("customer_order_farming", _PAY, "count_payments_customer_1h >= 8", _A.review,
              "Eight orders by one customer within an hour: a household orders once or twice a "
              "day; split orders farm per-order commissions."),
        _rule("ip_burst_10m", _PAY, "count_payments_ip_10m >= 20", _A.challenge,
              "Twenty orders from one address within 10 minutes: a farm (a compound's shared "
              "address rarely does this; a challenge lets its people through)."),
        _rule("farmed_accounts_on_device", _PAY, "distinct_customers_per_device_24h >= 5",
              _A.block, "Five or more customers on one device within 24 hours: one phone "
              "cycling accounts to collect new-user coupons and leader commissions."),
        _rule("accounts_per_ip", _PAY, "distinct_customers_per_ip_1h >= 10", _A.score,
              "Ten customers from one address within an hour: a farm, or a busy shared "
              "network — a score, so it takes another signal to act.", score=30),
        _rule("sku_rush", _PAY, "count_payments_sku_1h >= 300", _A.score,
              "Three hundred orders of one SKU within an hour: deals do open with a rush, "
              "so a score; with farmed accounts it is a product pushed up the ranking.",
              score=30),
        _rule("new_customer_large_basket", _PAY, "customer.age_days < 7 && amount > 100000",
              _A.review, "Over ¥1,000 from a customer of less than a week: new accounts buy "
              "small trial baskets; a large one is a farmed account or a test of the limits."),
        _rule("night_farming", _PAY, "local_hour < 5 && count_payments_customer_24h >= 3",
              _A.score, "A fourth order of the day before 05:00: farms work at night, when "
              "nobody checks the leaders' dashboards.", score=25),
        _rule("high_value_bank_only", _PAY, 'sku in list("high_value_skus")', _A.restrict,
              "Goods listed as high-value (liquor, electronics: what is bought to resell) may "
              "only be paid through online banking, in the payer's own name.",
              restrict_methods=BANK_METHODS),
        *_kyc_rules(_PAYOUT, "payouts", "withdrawal"),
        *_kyc_rules(_TRANSFER, "transfers", "wallet transfer"),
        _rule("blocked_payee", _PAYOUT, 'payee_account in list("blocked_payee_accounts")',
              _A.block, "A withdrawal to an account the team has blocked (a known mule)."),
        _rule("shared_payee_account", _PAYOUT, "distinct_customers_per_payer_account_7d >= 3",
              _A.review, "Three or more customers withdrawing to one account within a week: "
              "one person behind several leaders' commissions, or a mule collecting them."),
        _rule("fast_in_fast_out", _PAYOUT, "customer.age_days < 7 && amount >= balance",
              _A.review, "A customer of less than a week withdrawing the whole balance: money "
              "paid in only to be taken out again (laundering through the wallet)."),
        _rule("quick_refund_farming", _REFUND,
              "payment_age_hours < 2 && count_refunds_customer_24h >= 3", _A.review,
              "A fourth refund in a day, asked within two hours of paying: orders placed to "
              "inflate sales or trigger commissions, then taken back."),
        _rule("refund_heavy_customer", _PAY, "count_refunds_customer_7d >= 5", _A.score,
              "A customer with five refunds in a week ordering again. Shadow: recorded to "
              "see how it scores real customers before it counts.", score=40,
              mode=RuleMode.shadow),
    ),
)
# fmt: on

PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in (CARD_SHOP, GROUP_BUYING)})
"""Every preset by name."""


def get_preset(name: str) -> Preset:
    """The preset named ``name``, or NotFound (404)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise NotFound("preset", name) from None


async def apply_preset(
    session: AsyncSession, who: Owner, name: str, *, livemode: bool | None
) -> RuleSet:
    """Make the lists the preset reads, where none of that name can be read by the owner's
    rules yet, and save its rules as a draft (never published: the team reviews, tunes and
    publishes it). ``livemode``: the operator's mode (a merchant's is its key's).

    A list the owner's rules already read (its own, or for a merchant the platform's) is used
    as it is: making an empty one of the merchant's own would hide the platform's items from
    its rules. One of another type is a conflict: the rules would look the wrong values up.
    """
    preset = get_preset(name)
    mode = _mode(who, livemode)
    there = await RiskListRepository(session).named(who.readable(), mode,
                                                    [x.name for x in preset.lists])  # fmt: skip
    seen: dict[str, RiskList] = {}
    for x in sorted(there, key=lambda x: x.owner != who.owner):  # the owner's own first
        seen.setdefault(x.name, x)
    for wanted in preset.lists:  # every list checked before any is made
        if (found := seen.get(wanted.name)) is not None and found.type != wanted.type:
            raise Conflict("preset_list_type", f"The preset reads list {wanted.name!r} as "
                           f"{wanted.type.value}; the list of that name holds {found.type} "
                           "values.", param="name")  # fmt: skip
    for wanted in preset.lists:
        if wanted.name not in seen:
            await _create_list(session, who, wanted, mode)
    body = RuleSetCreate(rules=[r.rule for r in preset.rules], note=preset.note, livemode=mode,
                         review_score=preset.review_score,
                         block_score=preset.block_score)  # fmt: skip
    return await rulesets.create_draft(session, who, body)


async def _create_list(session: AsyncSession, who: Owner, wanted: PresetList, mode: bool) -> None:
    try:
        body = ListCreate(name=wanted.name, type=wanted.type, description=wanted.description,
                          livemode=mode)  # fmt: skip
        await service.create_list(session, who, body)
    except Conflict as exc:
        if exc.code != "list_exists":  # made at the same moment by another apply: use it
            raise


# -- the public shapes -------------------------------------------------------------------------


class PresetListOut(BaseModel):
    name: str
    type: ListType
    description: str


class PresetRuleOut(BaseModel):
    """A rule as a draft takes it (``RuleIn``'s fields, ``on_error`` made explicit) and why;
    in the order a person reads a table of them."""

    name: str
    event: EventType
    action: RuleAction
    score: int
    mode: RuleMode
    expression: str
    why: str
    """What the rule catches and why its threshold is where it is."""
    on_error: OnError
    restrict_methods: list[str] | None = None
    restrict_channels: list[str] | None = None

    @classmethod
    def of(cls, r: PresetRule) -> PresetRuleOut:
        x = r.rule
        return cls(name=x.name, event=x.event, action=x.action, score=x.score, mode=x.mode,
                   expression=x.expression, why=r.why,
                   on_error=x.on_error or rulesets.default_on_error(x.action),
                   restrict_methods=x.restrict_methods,
                   restrict_channels=x.restrict_channels)  # fmt: skip


class PresetOut(BaseModel):
    object: Literal["risk.preset"] = "risk.preset"
    name: str
    version: int
    title: str
    description: str
    note: str
    """What the draft an apply makes says it is."""
    review_score: int | None
    block_score: int | None
    lists: list[PresetListOut]
    rules: list[PresetRuleOut]

    @classmethod
    def of(cls, p: Preset) -> PresetOut:
        return cls(name=p.name, version=p.version, title=p.title, description=p.description,
                   note=p.note, review_score=p.review_score, block_score=p.block_score,
                   lists=[PresetListOut(name=x.name, type=x.type, description=x.description)
                          for x in p.lists],
                   rules=[PresetRuleOut.of(r) for r in p.rules])  # fmt: skip


class PresetApply(BaseModel):
    livemode: bool | None = None
    """The operator's mode for the platform's lists and draft (a merchant's key has its own)."""
