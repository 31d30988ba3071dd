"""Settlement runs: due payment funds of a merchant (per mode and currency) become available in
one batch — one ledger transaction moving pending → available less fees → fee revenue, the
funds rows stamped with the batch, a ``settlement.paid`` event to each app involved. A run that
dies leaves nothing half done (one database transaction per batch); two workers never settle
the same payment (its row is locked, others skip it)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.funds.models import PaymentFunds
from paymux.funds.repository import FundsRepository
from paymux.kit import clock
from paymux.kit.cache import TtlCache
from paymux.kit.errors import NotFound
from paymux.kit.ids import new_id
from paymux.ledger import chart
from paymux.ledger import service as ledger
from paymux.ledger.chart import Purpose
from paymux.payments.models import Payment
from paymux.settlement import policy
from paymux.settlement.models import Settlement, SettlementConfig
from paymux.settlement.repository import SettlementRepository
from paymux.settlement.schemas import SettlementConfigIn, SettlementOut
from paymux.webhooks import service as webhooks


async def config_of(session: AsyncSession, merchant_id: str) -> SettlementConfig:
    found = await SettlementRepository(session).config(merchant_id)
    return found if found is not None else policy.default_config(merchant_id)


_terms: TtlCache[str, policy.Terms] = TtlCache("settlement_terms")
"""Every payment's success reads its merchant's terms; a change made in another process is
seen within a second (at once in this one). A settlement run reads the config itself."""


async def terms_of(session: AsyncSession, merchant_id: str) -> policy.Terms:
    async def load() -> policy.Terms:
        return policy.Terms.of(await config_of(session, merchant_id))

    return await _terms.get_or_load(merchant_id, load)


async def configure(
    session: AsyncSession, merchant_id: str, body: SettlementConfigIn
) -> SettlementConfig:
    repo = SettlementRepository(session)
    config = await repo.config(merchant_id)
    if config is None:
        config = policy.default_config(merchant_id)
        repo.add(config)
    for field, value in body.model_dump().items():
        setattr(config, field, value)
    _terms.forget(merchant_id)
    return config


async def settle_due(session: AsyncSession, *, now: dt.datetime | None = None,
                     limit: int = 500) -> list[Settlement]:  # fmt: skip
    """Settle what is due, in the caller's transaction. Payments with refunds in flight wait."""
    now = now or clock.now()
    due = [f for f in await FundsRepository(session).settle_due(now, limit)
           if f.refund_reserved == 0]  # fmt: skip
    groups: dict[tuple[str, bool, str], list[PaymentFunds]] = defaultdict(list)
    for funds in due:
        groups[(funds.merchant_id, funds.livemode, funds.currency)].append(funds)
    batches = []
    for (merchant_id, livemode, currency), rows in sorted(groups.items()):
        config = await config_of(session, merchant_id)
        batches.append(await _batch(session, config, livemode, currency, rows, now))
    return batches


async def _batch(
    session: AsyncSession, config: SettlementConfig, livemode: bool, currency: str,
    rows: list[PaymentFunds], now: dt.datetime,
) -> Settlement:  # fmt: skip
    settlement_id = new_id("stl")
    amounts = [f.remaining for f in rows]
    fees = [policy.fee(config, amount) for amount in amounts]
    total, total_fee = sum(amounts), sum(fees)
    tx_id = ""
    if total:
        pending = await chart.merchant(session, config.merchant_id, livemode, Purpose.pending,
                                       currency)  # fmt: skip
        available = await chart.merchant(session, config.merchant_id, livemode,
                                         Purpose.available, currency)  # fmt: skip
        legs = [ledger.debit(pending, total)]
        if total - total_fee:
            legs.append(ledger.credit(available, total - total_fee))
        if total_fee:
            revenue = await chart.platform(session, livemode, Purpose.fee_revenue, currency)
            legs.append(ledger.credit(revenue, total_fee))
        tx = await ledger.transfer(
            session, key=f"settlement:{settlement_id}", legs=legs,
            description=f"settlement {settlement_id}", metadata={"settlement": settlement_id},
        )  # fmt: skip
        tx_id = tx.id
    for funds, fee in zip(rows, fees, strict=True):
        funds.settlement_id = settlement_id
        funds.fee = fee
    settlement = Settlement(
        id=settlement_id, merchant_id=config.merchant_id, livemode=livemode, currency=currency,
        status="paid", payment_count=len(rows), gross=sum(f.gross for f in rows),
        refunded=sum(f.refunded for f in rows), split_out=sum(f.split_out for f in rows),
        fees=total_fee, net=total - total_fee, ledger_transaction_id=tx_id, cutoff=now,
    )  # fmt: skip
    SettlementRepository(session).add(settlement)
    await session.flush()
    data = SettlementOut.of(settlement).model_dump(mode="json")
    for app_id in sorted({f.app_id for f in rows}):
        await webhooks.emit(session, app_id=app_id, livemode=livemode, type="settlement.paid",
                            data=data)  # fmt: skip
    return settlement


async def get(
    session: AsyncSession, merchant_id: str, livemode: bool, settlement_id: str
) -> Settlement:
    found = await SettlementRepository(session).get(merchant_id, livemode, settlement_id)
    if found is None:
        raise NotFound("settlement", settlement_id)
    return found


REPORT_COLUMNS = (
    "payment_id", "out_trade_no", "channel", "channel_trade_no", "paid_at", "currency",
    "gross", "refunded", "split_out", "fee", "net",
)  # fmt: skip


async def report_csv(
    session: AsyncSession, settlement: Settlement, *, app_id: str | None = None
) -> str:
    """The batch's report as one app sees it: a line per payment **of that app**, amounts in
    minor units, and a total line of those lines. A settlement is a merchant-level object (one
    batch, one ledger transaction into the merchant's balance) that every app of the merchant
    may see; the payments in it belong to their apps, and no app lists another's. Without
    ``app_id`` (the operator's CLI) every line, and the total is the settlement's."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    rows = [f for f in await FundsRepository(session).of_settlement(settlement.id)
            if app_id is None or f.app_id == app_id]  # fmt: skip
    totals = [0, 0, 0, 0, 0]
    for funds in rows:
        payment = await session.get(Payment, funds.payment_id)
        assert payment is not None
        net = funds.gross - funds.refunded - funds.split_out - funds.fee
        writer.writerow([
            payment.id, payment.out_trade_no, payment.channel or "", payment.channel_trade_no
            or "", payment.paid_at.isoformat() if payment.paid_at else "", funds.currency,
            funds.gross, funds.refunded, funds.split_out, funds.fee, net,
        ])  # fmt: skip
        for i, amount in enumerate((funds.gross, funds.refunded, funds.split_out, funds.fee, net)):
            totals[i] += amount
    writer.writerow(["total", "", "", "", "", settlement.currency, *totals])
    return out.getvalue()
