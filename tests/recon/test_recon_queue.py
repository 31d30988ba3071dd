"""The review queue: actions need a reason and are recorded with who did it; money-moving
actions wait for a second, different approver; the merchant sees only its own breaks; reports
are deterministic; uploads go through the same checks; webhooks tell the merchant. SQLite and
PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from pathlib import Path
from typing import Any

import openpyxl
import sqlalchemy as sa

from paymux.ledger.models import LedgerTransaction
from paymux.ledger.repository import LedgerRepository
from paymux.recon import archive
from paymux.recon.models import ReconFile
from tests.conftest import Stack, Tenant, make_tenant
from tests.payments.test_payments import events_of
from tests.recon.helpers import OPERATOR, breaks, operator, paid, reconcile, today, tweak


async def _one_break(stack: Stack, clock: Any, amount: int = 1_001) -> tuple[Tenant, Any, Any]:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    day = today()
    _, attempt = await paid(stack, tenant, amount=1_000)
    await tweak(stack, day, "amount", out_trade_no=attempt, amount=amount)
    clock.advance(86_400)
    run = await reconcile(stack, tenant, day)
    (found,) = await breaks(stack, tenant)
    return tenant, run, found


async def _act(stack: Stack, break_id: str, actor: str = "alice", **body: Any) -> Any:
    return await stack.client.post(f"/v1/operator/recon/breaks/{break_id}/actions",
                                   headers=operator(actor), json=body)  # fmt: skip


async def _approve(stack: Stack, approval_id: str, actor: str, reason: str) -> Any:
    return await stack.client.post(f"/v1/operator/recon/approvals/{approval_id}/approve",
                                   headers=operator(actor), json={"reason": reason})  # fmt: skip


async def test_an_action_needs_a_reason_and_an_actor_and_is_recorded(
    stack: Stack, clock: Any
) -> None:
    _, _, found = await _one_break(stack, clock)
    r = await _act(stack, found["id"], action="ignore", reason="")
    assert r.status_code == 400 and "reason" in r.text, r.text
    body = {"action": "ignore", "reason": "known"}
    r = await stack.client.post(f"/v1/operator/recon/breaks/{found['id']}/actions",
                                headers=OPERATOR, json=body)  # fmt: skip
    assert (r.status_code, r.json()["error"]["code"]) == (400, "actor_required")
    r = await _act(stack, found["id"], action="ignore", reason="test merchant, known")
    assert r.status_code == 200, r.text
    assert r.json()["break"]["state"] == "resolved"
    detail = (await stack.client.get(f"/v1/operator/recon/breaks/{found['id']}",
                                     headers=OPERATOR)).json()  # fmt: skip
    actions = [(e["action"], e["actor"]) for e in detail["history"]]
    assert actions[0] == ("opened", "system:recon")
    assert actions[-1] == ("ignore", "operator:alice")
    again = await _act(stack, found["id"], action="void", reason="twice")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "break_resolved")


async def test_an_adjustment_needs_a_second_approver(stack: Stack, clock: Any) -> None:
    tenant, _, found = await _one_break(stack, clock)
    adjusted = LedgerTransaction.key.like(f"recon_adjust:{found['id']}:%")
    r = await _act(stack, found["id"], action="adjust", reason="channel took 1 fen more")
    assert r.status_code == 200, r.text
    approval = r.json()["approval"]
    assert approval["state"] == "pending" and approval["amount"] == 1
    assert r.json()["break"]["state"] == "open"
    same = await _approve(stack, approval["id"], "alice", "me again")
    assert (same.status_code, same.json()["error"]["code"]) == (403, "second_approver_required")
    async with stack.runtime.db.read() as session:
        stmt = sa.select(LedgerTransaction).where(adjusted)
        assert list(await session.scalars(stmt)) == []
    ok = await _approve(stack, approval["id"], "bob", "checked the bill")
    assert ok.status_code == 200, ok.text
    assert (ok.json()["state"], ok.json()["decided_by"]) == ("approved", "operator:bob")
    detail = (await stack.client.get(f"/v1/operator/recon/breaks/{found['id']}",
                                     headers=OPERATOR)).json()  # fmt: skip
    assert (detail["state"], detail["resolution"]) == ("resolved", "adjusted")
    async with stack.runtime.db.read() as session:
        stmt = sa.select(LedgerTransaction).where(adjusted)
        (tx,) = list(await session.scalars(stmt))
        totals = await LedgerRepository(session).totals_by_currency()
    assert tx.metadata_["break"] == found["id"]
    debits, credits = totals["CNY"]
    assert debits == credits
    twice = await _approve(stack, approval["id"], "carol", "again")
    assert (twice.status_code, twice.json()["error"]["code"]) == (409, "approval_decided")


async def test_below_the_threshold_an_adjustment_is_booked_at_once(
    stack: Stack, clock: Any
) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    r = await stack.client.put(
        f"/v1/operator/recon/configs/{tenant.accounts['wechatpay']}", headers=OPERATOR,
        json={"grace_days": 1, "approval_threshold": 5},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    day = today()
    _, attempt = await paid(stack, tenant, amount=1_000)
    await tweak(stack, day, "amount", out_trade_no=attempt, amount=999)
    clock.advance(86_400)
    await reconcile(stack, tenant, day)
    (found,) = await breaks(stack, tenant)
    assert (found["class"], found["delta"]) == ("amount_under", -1)
    r = await _act(stack, found["id"], action="adjust", reason="rounding", account="fee_rounding")
    assert r.status_code == 200 and r.json()["approval"] is None, r.text
    assert r.json()["break"]["resolution"] == "adjusted"


async def test_an_acceptance_lapses_when_the_amount_changes(stack: Stack, clock: Any) -> None:
    tenant, run, found = await _one_break(stack, clock)
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
    r = await _act(stack, found["id"], action="accept", reason="known, paid back", until=until)
    assert r.status_code == 200 and r.json()["break"]["state"] == "accepted", r.text
    day = dt.date.fromisoformat(run["bill_date"])
    same = await reconcile(stack, tenant, day)
    assert same["verdict"] == "reconciled", same  # accepted as it is: explained
    await stack.client.delete("/sandbox/wechatpay/_sandbox/bill_tweaks")
    await tweak(stack, day, "amount", out_trade_no=found["key"], amount=1_005)
    changed = await reconcile(stack, tenant, day)
    assert changed["verdict"] == "breaks"
    (again,) = await breaks(stack, tenant)
    assert again["id"] == found["id"] and again["state"] == "open"


async def test_the_merchant_sees_its_own_breaks_only(stack: Stack, clock: Any) -> None:
    tenant, run, found = await _one_break(stack, clock)
    other = await make_tenant(stack, channels=("wechatpay",))
    mine = await stack.client.get("/v1/recon/breaks", headers=tenant.headers)
    assert [b["id"] for b in mine.json()["data"]] == [found["id"]]
    theirs = await stack.client.get("/v1/recon/breaks", headers=other.headers)
    assert theirs.json()["data"] == []
    for path in (
        f"/v1/recon/breaks/{found['id']}",
        f"/v1/recon/runs/{run['id']}",
        f"/v1/recon/runs/{run['id']}/report",
    ):
        r = await stack.client.get(path, headers=other.headers)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "resource_missing"), path


async def test_reports_are_deterministic_in_every_format(stack: Stack, clock: Any) -> None:
    tenant, run, found = await _one_break(stack, clock)
    base = f"/v1/operator/recon/runs/{run['id']}/report"
    first = await stack.client.get(base, headers=OPERATOR)
    second = await stack.client.get(base, headers=OPERATOR)
    assert first.content == second.content
    digest = hashlib.sha256(first.content).hexdigest()
    assert first.headers["paymux-report-sha256"] == digest == run["report_sha256"]
    text = (await stack.client.get(base, headers=OPERATOR, params={"format": "csv"})).text
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0][0] == "currency" and rows[1][0] == "CNY" and rows[1][1] == "breaks"
    (line,) = [row for row in rows if row and row[0] == found["id"]]
    assert line[1] == "amount_over"
    xlsx = await stack.client.get(base, headers=OPERATOR, params={"format": "xlsx"})
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content), read_only=True)
    assert [r[0] for r in book["breaks"].iter_rows(values_only=True)] == ["id", found["id"]]


async def test_an_uploaded_bill_is_checked_like_a_fetched_one(stack: Stack, clock: Any) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    await paid(stack, tenant)
    day = today()
    clock.advance(86_400)
    fetched = await reconcile(stack, tenant, day)
    async with stack.runtime.db.read() as session:
        file = await session.get(ReconFile, fetched["file_id"])
        assert file is not None
    root = Path(stack.runtime.settings.recon_archive_dir)
    data = archive.path_of(root, file.sha256).read_bytes()  # the bill as the channel gave it
    assert hashlib.sha256(data).hexdigest() == file.sha256 and file.size == len(data)
    params = {"channel_account_id": tenant.accounts["wechatpay"], "bill_date": day.isoformat(),
              "filename": "bill.csv"}  # fmt: skip
    r = await stack.client.post("/v1/operator/recon/runs/upload", params=params,
                                headers=operator(), content=data)  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["verdict"] == "reconciled" and r.json()["source"] == "upload"
    broken = data.replace(b"`1", b"`2", 1)
    r = await stack.client.post("/v1/operator/recon/runs/upload", params=params,
                                headers=operator(), content=broken)  # fmt: skip
    assert r.json()["verdict"] in ("incomplete", "breaks"), r.json()
    r = await stack.client.post("/v1/operator/recon/runs/upload", params=params,
                                headers=operator(), content=b"not a bill at all")  # fmt: skip
    assert r.json()["verdict"] == "incomplete" and r.json()["problems"], r.json()
    empty = await stack.client.post("/v1/operator/recon/runs/upload", params=params,
                                    headers=operator(), content=b"")  # fmt: skip
    assert (empty.status_code, empty.json()["error"]["code"]) == (400, "file_empty")


async def test_webhooks_tell_the_merchant(stack: Stack, clock: Any) -> None:
    tenant, run, found = await _one_break(stack, clock, amount=900)  # amount_under: P1
    completed = await events_of(stack, tenant, "recon.run.completed")
    assert [e.data["id"] for e in completed] == [run["id"]]
    opened = await events_of(stack, tenant, "recon.break.opened")
    assert [e.data["id"] for e in opened] == [found["id"]] and found["priority"] == 1
