"""``paymux recon …``: reconciliation from the terminal — run or upload a bill day, the runs and
their reports, the break queue and its actions, approvals, per-account settings. The operator's
view (every merchant); actions name their person with ``--actor`` (recorded in each break's
history, compared by the second-approver rule)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer

from paymux.cli.common import After, Limit, page_of, parse_body, run
from paymux.cli.output import emit, fail
from paymux.runtime import Runtime

recon_app = typer.Typer(help="Reconciliation (对账) against every channel's daily bill.",
                        no_args_is_help=True)  # fmt: skip

Account = Annotated[str, typer.Option("--account", help="The channel account id (chn_…).")]
Day = Annotated[str, typer.Option("--date", help="The bill day, YYYY-MM-DD (channel time).")]
Actor = Annotated[str, typer.Option("--actor", help="Who you are (recorded with the action).")]
Reason = Annotated[str, typer.Option("--reason", help="Why (required, kept in the history).")]
Bill = Annotated[str, typer.Option("--bill", help="trade (payments, refunds) or funds "
                                   "(payouts, settlements).")]  # fmt: skip
RUN_COLUMNS = ("id", "bill_date", "bill", "run_no", "status", "verdict", "line_count",
               "break_count", "pending_count")  # fmt: skip
BREAK_COLUMNS = ("id", "class", "priority", "state", "key", "currency", "channel_amount",
                 "local_amount", "delta", "last_bill_date")  # fmt: skip


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        fail("parameter_invalid", f"--date: not a YYYY-MM-DD day: {text!r}")


def _bill(text: str) -> Any:
    from paymux.channels.bills import BillKind

    try:
        return BillKind(text)
    except ValueError:
        fail("parameter_invalid", f"--bill: trade or funds, not {text!r}")


def _who(actor: str) -> str:
    if not actor.strip() or len(actor) > 100:
        fail("actor_required", "--actor: 1–100 characters.")
    return f"operator:{actor.strip()}"


def _run_out(r: Any) -> dict[str, Any]:
    from paymux.recon.schemas import RunOut

    return RunOut.of(r).model_dump(mode="json")


@recon_app.command("run")
def recon_run(account: Account, date: Day, actor: Actor = "cli", bill: Bill = "trade") -> None:
    """Fetch the account's bill of the day from the channel now and reconcile it."""
    from paymux.recon import service

    day, kind = _day(date), _bill(bill)

    async def go(rt: Runtime) -> dict[str, Any]:
        return _run_out(await service.run(rt, account, day, bill=kind, source="manual",
                                          actor=_who(actor)))  # fmt: skip

    emit(run(go), title="recon run")


@recon_app.command("due")
def recon_due(
    account: Annotated[list[str] | None, typer.Option("--account", help="Only these.")] = None,
) -> None:
    """Run the daily job once now: every enabled account's recent bill days that are
    published and not reconciled yet."""
    from paymux.recon import tasks

    async def go(rt: Runtime) -> dict[str, Any]:
        ran = await tasks.reconcile_due(rt, only=set(account) if account else None, force=True)
        return {"object": "recon.due", "runs": ran}

    emit(run(go), title="recon due")


@recon_app.command("upload")
def recon_upload(
    file: Annotated[Path, typer.Argument(help="The bill file as the channel gave it.",
                                         exists=True, dir_okay=False, readable=True)],
    account: Account, date: Day, actor: Actor = "cli", bill: Bill = "trade",
) -> None:  # fmt: skip
    """Reconcile a bill file downloaded from the channel's merchant portal."""
    from paymux.recon import service

    day, kind = _day(date), _bill(bill)
    if file.stat().st_size == 0:
        fail("file_empty", f"{file} is empty.")

    async def go(rt: Runtime) -> dict[str, Any]:
        upload = service.Upload(file, file.name)
        return _run_out(await service.run(rt, account, day, bill=kind, actor=_who(actor),
                                          upload=upload))  # fmt: skip

    emit(run(go), title="recon run")


@recon_app.command("runs")
def recon_runs(
    account: Annotated[str | None, typer.Option("--account")] = None,
    date: Annotated[str | None, typer.Option("--date")] = None,
    bill: Annotated[str | None, typer.Option("--bill", help="trade or funds.")] = None,
    limit: Limit = 20, starting_after: After = None,
) -> None:  # fmt: skip
    """Runs, newest first."""
    from paymux.recon.repository import ReconRepository

    day = _day(date) if date else None
    kind = _bill(bill).value if bill else None

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            rows, more = await ReconRepository(s).runs(
                app_id=None, livemode=None, account_id=account, day=day, limit=limit,
                starting_after=starting_after, bill=kind,
            )  # fmt: skip
        return page_of([_run_out(r) for r in rows], more)

    emit(run(go), columns=RUN_COLUMNS)


@recon_app.command("show")
def recon_show(run_id: str) -> None:
    """One run: verdict, reasons, the bill's checks and bad rows, totals per currency."""
    from paymux.recon.repository import ReconRepository

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            r = await ReconRepository(s).get_run(run_id)
        if r is None:
            fail("resource_missing", f"No such run: {run_id!r}")
        return _run_out(r)

    emit(run(go), title="recon run")


@recon_app.command("report")
def recon_report(
    run_id: str,
    format: Annotated[str, typer.Option("--format", help="json, csv or xlsx.")] = "csv",
    out: Annotated[Path | None, typer.Option("--out", help="Write here (default: stdout; "
                                             "xlsx needs --out).")] = None,
) -> None:  # fmt: skip
    """The run's daily statement and breaks; prints its SHA-256 to stderr."""
    from paymux.recon import reports
    from paymux.recon.repository import ReconRepository

    if format not in ("json", "csv", "xlsx"):
        fail("parameter_invalid", "--format: json, csv or xlsx.")
    if format == "xlsx" and out is None:
        fail("parameter_invalid", "--format xlsx needs --out FILE.")

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            repo = ReconRepository(s)
            r = await repo.get_run(run_id)
            if r is None:
                fail("resource_missing", f"No such run: {run_id!r}")
            return reports.run_document(r, await repo.run_breaks(r.id))

    document = run(go)
    if format == "json":
        data = reports.canonical(document)
    elif format == "csv":
        data = "".join(reports.to_csv(document)).encode()
    else:
        data = reports.to_xlsx(document)
    if out is None:
        typer.echo(data.decode(), nl=False)
    else:
        out.write_bytes(data)
    typer.echo(f"sha256 {reports.digest(document)}", err=True)


@recon_app.command("breaks")
def recon_breaks(
    account: Annotated[str | None, typer.Option("--account")] = None,
    merchant: Annotated[str | None, typer.Option("--merchant")] = None,
    klass: Annotated[str | None, typer.Option("--class", help="A break class.")] = None,
    priority: Annotated[int | None, typer.Option(min=1, max=3)] = None,
    state: Annotated[str, typer.Option(help="open, accepted or resolved.")] = "open",
    limit: Limit = 50, starting_after: After = None,
) -> None:  # fmt: skip
    """The review queue."""
    from paymux.recon.models import BreakClass, BreakState
    from paymux.recon.repository import ReconRepository
    from paymux.recon.schemas import BreakOut

    if klass is not None and klass not in BreakClass.__members__:
        fail("parameter_invalid", f"--class: one of {', '.join(BreakClass.__members__)}.")
    if state not in BreakState.__members__:
        fail("parameter_invalid", f"--state: one of {', '.join(BreakState.__members__)}.")

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            rows, more = await ReconRepository(s).breaks(
                app_id=None, livemode=None, account_id=account, merchant_id=merchant,
                klass=klass, priority=priority, state=state, opened_before=None, limit=limit,
                starting_after=starting_after,
            )  # fmt: skip
        return page_of([BreakOut.of(b).model_dump(mode="json", by_alias=True) for b in rows],
                       more)  # fmt: skip

    emit(run(go), columns=BREAK_COLUMNS)


@recon_app.command("break")
def recon_break(break_id: str) -> None:
    """One break with its history and approvals."""
    from paymux.recon import actions
    from paymux.recon.schemas import OPERATOR

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            found = await actions.detail(s, OPERATOR, break_id)
        return found.model_dump(mode="json", by_alias=True)

    emit(run(go), title="recon break")


@recon_app.command("act")
def recon_act(
    break_id: str,
    action: Annotated[str, typer.Argument(help="link, mark_received, ignore, void, accept, "
                                          "adjust or refund.")],
    reason: Reason, actor: Actor,
    record: Annotated[list[str] | None, typer.Option("--record", help="link: a record id "
                                                     "(repeat for N:1).")] = None,
    until: Annotated[str | None, typer.Option(help="accept: until (ISO 8601).")] = None,
    amount: Annotated[int | None, typer.Option(help="adjust: minor units.")] = None,
    account: Annotated[str, typer.Option(help="adjust: suspense or fee_rounding.")] = "suspense",
) -> None:  # fmt: skip
    """Act on a break. A refund, or an adjustment above the approval threshold, is requested
    and waits for a second person's ``paymux recon approve``."""
    from paymux.recon import actions
    from paymux.recon.schemas import OPERATOR, ApprovalOut, BreakAction, BreakOut

    body = parse_body(BreakAction, action=action, reason=reason, records=record or [],
                      until=until, amount=amount, account=account)  # fmt: skip
    who = _who(actor)

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            b, approval = await actions.act(s, break_id, body, actor=who, scope=OPERATOR)
            return {"break": BreakOut.of(b).model_dump(mode="json", by_alias=True),
                    "approval": ApprovalOut.of(approval).model_dump(mode="json")
                    if approval else None}  # fmt: skip

    emit(run(go), title="recon action")


def _decide(approval_id: str, approve: bool, reason: str, actor: str) -> None:
    from paymux.recon import actions
    from paymux.recon.schemas import OPERATOR, ApprovalOut, Decision

    body = parse_body(Decision, reason=reason)
    who = _who(actor)

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            _, approval = await actions.decide(s, approval_id, approve=approve, actor=who,
                                               reason=body.reason, scope=OPERATOR)  # fmt: skip
            return ApprovalOut.of(approval).model_dump(mode="json")

    emit(run(go), title="recon approval")


@recon_app.command("approve")
def recon_approve(approval_id: str, reason: Reason, actor: Actor) -> None:
    """Approve and carry out a requested action (not by its requester)."""
    _decide(approval_id, True, reason, actor)


@recon_app.command("reject")
def recon_reject(approval_id: str, reason: Reason, actor: Actor) -> None:
    """Reject a requested action."""
    _decide(approval_id, False, reason, actor)


@recon_app.command("config")
def recon_config(
    account: Account,
    enabled: Annotated[bool, typer.Option("--enabled/--disabled")] = True,
    fetch_after_minutes: Annotated[int | None, typer.Option(
        help="Minutes after the bill day ends (default: the channel's publication time).")]
        = None,
    grace_days: Annotated[int, typer.Option(help="Days a record may be missing.")] = 1,
    approval_threshold: Annotated[int, typer.Option(
        help="Adjustments above this (minor units) need a second approver.")] = 0,
    opening_balance: Annotated[list[str] | None, typer.Option(
        help="CUR=AMOUNT (minor units): what the channel account held before paymux, for the "
             "funds bill's balance check; repeat per currency.")] = None,
) -> None:  # fmt: skip
    """How the account is reconciled (the daily job, grace, approvals, opening balances)."""
    from paymux.recon import actions
    from paymux.recon.schemas import ConfigIn

    opening: dict[str, Any] = {}
    for item in opening_balance or []:
        currency, _, amount = item.partition("=")
        opening[currency.strip()] = amount.strip()
    body = parse_body(ConfigIn, enabled=enabled, fetch_after_minutes=fetch_after_minutes,
                      grace_days=grace_days, approval_threshold=approval_threshold,
                      opening_balances=opening)  # fmt: skip

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            await actions.configure(s, account, body)
        return {"channel_account_id": account, **body.model_dump()}

    emit(run(go), title="recon config")
