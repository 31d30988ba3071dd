"""UnionPay ``fileTransfer`` bill as reconciliation reads it: golden zips through the
adapter's ``bill_reader``, every sandbox bill tweak fetched through ``fetch_bill``, and a
reader's memory on a large file. Format facts (and why there is no summary check):
:mod:`paymux.channels.unionpay.bill`."""

from __future__ import annotations

import datetime as dt
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paymux.channels.base import RetryableError, StatementLine, StatementLineKind
from paymux.channels.bills import BillReader
from paymux.channels.unionpay import protocol as p
from paymux.channels.unionpay.bill import UnionPayBillReader
from paymux.channels.unionpay.sandbox import BAD_ZM_RECORD
from paymux.kit import clock
from tests.channels import golden_bills
from tests.channels.test_unionpay import Env, env, paid, refund_of

__all__ = ["env"]


# ------------------------------------------------------------------ golden files
@pytest.mark.parametrize("path", golden_bills.bills_of("unionpay"), ids=lambda p: p.name)
async def test_golden_bill(env: Env, path: Path) -> None:
    """day: two consumes, a partial and a full 退货, a consume of the day before (cleared on
    this settlement date), a consume listed twice — no checks (ZM has none); empty: an empty
    ZM file; bad_row: a bad txnAmt, a cut record, a bad merFee, the good record read; zme: a
    ZME record (placeholder content: the ZME layout is not known) is a problem, never
    silently skipped; not_a_bill (an Alipay zip) and not_a_zip: one problem at position 0.
    (No bad-summary file: the format has no summary to be off.)"""
    golden_bills.compare(path, env.adapter.bill_reader(path, {}))


# ------------------------------------------------------------------ sandbox tweaks
CHINA = p.CHINA


@pytest.fixture
def ahead() -> Iterator[clock.OffsetClock]:
    """Forward, not back: the sandbox's certificates start now."""
    shifted = clock.OffsetClock()
    previous = clock.set_clock(shifted)
    yield shifted
    clock.set_clock(previous)


def go_to(shifted: clock.OffsetClock, day: dt.date) -> None:
    shifted.offset = dt.timedelta()
    shifted.offset = dt.datetime.combine(day, dt.time(12), tzinfo=CHINA) - clock.now()


class Day:
    """Tomorrow's settlement day: two orders paid (10000, 1999), 4000 of the first refunded;
    the clock then two days further."""

    def __init__(self, day: dt.date, first: str, second: str, refund_no: str) -> None:
        self.day, self.first, self.second, self.refund_no = day, first, second, refund_no


@pytest.fixture
async def business(env: Env, ahead: clock.OffsetClock) -> Day:
    day = dt.datetime.now(CHINA).date() + dt.timedelta(days=1)
    go_to(ahead, day)
    first, query_id = await paid(env, amount=10000)
    second, _ = await paid(env, amount=1999)
    back = refund_of(first, query_id, 4000)
    await env.adapter.create_refund(back)
    for _ in range(200):  # the refund succeeds a moment after it is accepted
        if (await env.adapter.query_refund(back.out_refund_no, first.out_trade_no)).status.value \
                == "succeeded":  # fmt: skip
            break
    go_to(ahead, day + dt.timedelta(days=2))
    return Day(day, first.out_trade_no, second.out_trade_no, back.out_refund_no)


async def tweak(env: Env, day: dt.date, kind: str, our: str | None = None, **fields: Any) -> None:
    body = {"day": f"{day}", "kind": kind, **fields}
    if our is not None:  # the orderId UnionPay knows: our id without its underscore
        body["out_trade_no"] = p.order_id(our)
    answer = await env.client.post("/_sandbox/bill_tweaks", json=body)
    assert answer.status_code == 200, answer.text


async def fetched(env: Env, day: dt.date, tmp_path: Path) -> tuple[BillReader, list[StatementLine]]:
    path = tmp_path / f"{day}.zip"
    with path.open("wb") as handle:
        got = await env.adapter.fetch_bill(day, handle)
    assert got.exists and got.filename == f"{day:%Y%m%d}_{env.creds['mer_id']}.zip"
    reader = env.adapter.bill_reader(path, got.expected)
    return reader, list(reader.lines())


def of(lines: list[StatementLine], order: str) -> list[tuple[StatementLineKind, int, int]]:
    return [(x.kind, x.amount, x.fee) for x in lines if x.out_trade_no == order]


async def test_untweaked_bill_is_intact_without_checks(
    env: Env, business: Day, tmp_path: Path
) -> None:
    reader, lines = await fetched(env, business.day, tmp_path)
    assert reader.intact and reader.checks == []  # ZM states no totals to check against
    assert of(lines, business.first) == [(StatementLineKind.payment, 10000, 60)]
    (back,) = [x for x in lines if x.kind is StatementLineKind.refund]
    assert (back.out_refund_no, back.amount, back.fee) == (business.refund_no, -4000, -24)
    with pytest.raises(RetryableError) as not_ready, (tmp_path / "x").open("wb") as handle:
        await env.adapter.fetch_bill(clock.now().astimezone(CHINA).date(), handle)
    assert not_ready.value.code == "statement_not_ready"


async def test_amount_and_fee(env: Env, business: Day, tmp_path: Path) -> None:
    await tweak(env, business.day, "amount", business.first, amount=9999)
    await tweak(env, business.day, "fee", business.second, amount=50)
    reader, lines = await fetched(env, business.day, tmp_path)
    assert reader.intact
    assert of(lines, business.first) == [(StatementLineKind.payment, 9999, 60)]
    assert of(lines, business.second) == [(StatementLineKind.payment, 1999, 50)]


async def test_duplicate_and_drop(env: Env, business: Day, tmp_path: Path) -> None:
    await tweak(env, business.day, "duplicate", business.second)
    await tweak(env, business.day, "drop", business.first)
    reader, lines = await fetched(env, business.day, tmp_path)
    assert reader.intact
    assert of(lines, business.second) == [(StatementLineKind.payment, 1999, 12)] * 2
    assert of(lines, business.first) == []
    assert [x.out_refund_no for x in lines if x.kind is StatementLineKind.refund] == [
        business.refund_no
    ]


async def test_next_day(env: Env, business: Day, tmp_path: Path) -> None:
    await tweak(env, business.day, "next_day", business.second)
    _, lines = await fetched(env, business.day, tmp_path)
    assert of(lines, business.second) == []
    later, moved = await fetched(env, business.day + dt.timedelta(days=1), tmp_path)
    assert later.intact and of(moved, business.second) == [(StatementLineKind.payment, 1999, 12)]
    (line,) = moved
    assert line.occurred_at and line.occurred_at.astimezone(CHINA).date() == business.day


async def test_extra_payment_and_refund(env: Env, business: Day, tmp_path: Path) -> None:
    await tweak(env, business.day, "extra_payment", amount=777)
    await tweak(env, business.day, "extra_refund", business.second, amount=500)
    reader, lines = await fetched(env, business.day, tmp_path)
    assert reader.intact
    (extra,) = [x for x in lines if x.kind is StatementLineKind.payment
                and x.out_trade_no not in (business.first, business.second)]  # fmt: skip
    assert (extra.amount, extra.fee) == (777, 5)
    assert extra.out_trade_no and extra.out_trade_no.startswith("portal")
    (portal,) = [x for x in lines if x.kind is StatementLineKind.refund
                 and x.out_refund_no != business.refund_no]  # fmt: skip
    assert (portal.amount, portal.fee) == (-500, -3)
    assert portal.out_refund_no and portal.out_refund_no.startswith("portal")
    order = env.sandbox.core.find(p.order_id(business.second))
    assert order is not None and portal.channel_trade_no == order.channel_trade_no


async def test_corrupt_summary_has_nothing_to_corrupt(
    env: Env, business: Day, tmp_path: Path
) -> None:
    before = env.sandbox.bill(env.creds["mer_id"], business.day)
    await tweak(env, business.day, "corrupt_summary", amount=3)
    assert env.sandbox.bill(env.creds["mer_id"], business.day) == before
    reader, _ = await fetched(env, business.day, tmp_path)
    assert reader.intact and reader.checks == []


async def test_bad_row(env: Env, business: Day, tmp_path: Path) -> None:
    await tweak(env, business.day, "bad_row")
    reader, lines = await fetched(env, business.day, tmp_path)
    assert len(lines) == 3 and reader.problem_count == 1
    assert reader.problems[0].text == BAD_ZM_RECORD.decode("gbk")


# ------------------------------------------------------------------ a large file
def test_a_large_bill_reads_in_bounded_memory(tmp_path: Path) -> None:
    """10k ZM records (a ~6 MB member): the reader's peak stays under 1 MB. (Fewer than a
    busy day only to keep tracemalloc's overhead bearable: the member alone is several times
    the limit, so a reader that held it would fail.)"""
    rows, limit = 10_000, 1024 * 1024
    day = dt.date(2026, 11, 30)
    record = p.zm_line({"tradeCode": "S22", "txnTime": "1130100000", "txnAmt": "000000001234",
                        "queryId": "612611301000050000001", "orderId": "att01kb000000000000",
                        "merFee": "D000000000007"}) + b"\r\n"  # fmt: skip
    path = tmp_path / "large.zip"
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open(p.zm_file_name(day, "777290058110048"), "w") as member,
    ):
        for _ in range(rows):
            member.write(record)
    with zipfile.ZipFile(path) as archive:
        assert max(i.file_size for i in archive.infolist()) > 5 * limit
    reader = UnionPayBillReader(path)
    tracemalloc.start()
    try:
        count = total = 0
        for line in reader.lines():
            count, total = count + 1, total + line.amount
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (count, total) == (rows, rows * 1234) and reader.intact, reader.failures()
    assert peak < limit, f"peak {peak} bytes"


async def test_a_bill_fetched_twice_is_the_same_file(
    env: Env, business: Day, tmp_path: Path
) -> None:
    await tweak(env, business.day, "duplicate", business.second)
    files = []
    for name in ("one", "two"):
        with (tmp_path / name).open("wb") as handle:
            await env.adapter.fetch_bill(business.day, handle)
        files.append((tmp_path / name).read_bytes())
    assert files[0] == files[1]
