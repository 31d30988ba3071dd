"""Reconciliation over HTTP, thin over :mod:`paymux.recon.service` and
:mod:`paymux.recon.actions`.

- ``/v1/operator/recon/…`` (operator token): runs of any channel account (fetch now, or upload
  a bill file), the break queue across all merchants with its actions and approvals, reports
  and per-account settings. Actions name their person in the ``Paymux-Actor`` header (until
  the console's signed-in users exist, the operator token is shared: the header is what the
  history records and what the second-approver rule compares).
- ``/v1/recon/…`` (a merchant's API key): the same runs, breaks and reports of the app's own
  channel accounts in the key's mode, read-only.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from paymux.channels.bills import BillKind
from paymux.kit.errors import InvalidRequest, NotFound
from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import ListResponse, PageDep, ReadSessionDep, RuntimeDep, SessionDep
from paymux.merchants.auth import AuthDep, OperatorDep
from paymux.recon import actions, reports, service
from paymux.recon.models import BreakClass, BreakState
from paymux.recon.repository import ReconRepository
from paymux.recon.schemas import (
    OPERATOR,
    ApprovalOut,
    BreakAction,
    BreakDetail,
    BreakOut,
    ConfigIn,
    Decision,
    RunCreate,
    RunOut,
    Scope,
)

operator_router = APIRouter(prefix="/v1/operator/recon", tags=["reconciliation"],
                            route_class=IdempotentRoute)  # fmt: skip
merchant_router = APIRouter(prefix="/v1/recon", tags=["reconciliation"])

ReportFormat = Literal["json", "csv", "xlsx"]


def _actor(value: str | None) -> str:
    if not value or not value.strip() or len(value) > 100:
        raise InvalidRequest("actor_required", "Name yourself in the Paymux-Actor header "
                             "(1–100 characters).", param="Paymux-Actor")  # fmt: skip
    return f"operator:{value.strip()}"


ActorHeader = Annotated[str | None, Header(alias="Paymux-Actor")]


# ------------------------------------------------------------------ runs
@operator_router.post("/runs", status_code=201, response_model=RunOut)
async def create_run(body: RunCreate, _: OperatorDep, rt: RuntimeDep,
                     actor: ActorHeader = None) -> RunOut:  # fmt: skip
    """Fetch the channel account's bill (``trade`` or ``funds``) of ``bill_date`` now and
    reconcile it (a new run number each time). A bill the channel has not published yet gives a
    run in status ``waiting``."""
    r = await service.run(rt, body.channel_account_id, body.bill_date, bill=body.bill,
                          source="manual", actor=_actor(actor))  # fmt: skip
    return RunOut.of(r)


@operator_router.post("/runs/upload", status_code=201, response_model=RunOut)
async def upload_run(
    request: Request, _: OperatorDep, rt: RuntimeDep,
    channel_account_id: Annotated[str, Query(max_length=40)],
    bill_date: Annotated[dt.date, Query()],
    filename: Annotated[str, Query(max_length=255)] = "upload",
    bill: Annotated[BillKind, Query()] = BillKind.trade,
    actor: ActorHeader = None,
) -> RunOut:  # fmt: skip
    """Reconcile a bill file a person downloaded from the channel's merchant portal: the body
    is the file exactly as the channel gave it (``application/octet-stream``). It is archived
    by its SHA-256 and read like a fetched one (its own integrity checks included). The body
    is streamed to disk; with an ``Idempotency-Key`` it is held in memory to fingerprint the
    request, so leave the key off for large files (a re-upload is a new run of the same
    archived file, nothing else)."""
    who = _actor(actor)
    limit = rt.settings.recon_max_upload_bytes
    with tempfile.NamedTemporaryFile(prefix="paymux-upload-") as handle:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise InvalidRequest("file_too_large", f"Bill files are at most {limit} bytes.")
            handle.write(chunk)
        if size == 0:
            raise InvalidRequest("file_empty", "The body is empty: send the bill file.")
        handle.flush()
        r = await service.run(rt, channel_account_id, bill_date, bill=bill, actor=who,
                              upload=service.Upload(Path(handle.name), filename))  # fmt: skip
    return RunOut.of(r)


async def _runs(session: ReadSessionDep, scope: Scope, page: PageDep, account: str | None,
                day: dt.date | None, bill: BillKind | None) -> ListResponse[RunOut]:  # fmt: skip
    rows, more = await ReconRepository(session).runs(
        app_id=scope.app_id, livemode=scope.livemode, account_id=account, day=day,
        limit=page.limit, starting_after=page.starting_after,
        bill=bill.value if bill is not None else None,
    )  # fmt: skip
    return ListResponse[RunOut](data=[RunOut.of(r) for r in rows], has_more=more)


async def _run(session: ReadSessionDep, scope: Scope, run_id: str) -> RunOut:
    r = await ReconRepository(session).get_run(run_id)
    if r is None or not scope.sees(r.app_id, r.livemode):
        raise NotFound("run", run_id)
    return RunOut.of(r)


async def _report(session: ReadSessionDep, scope: Scope, run_id: str,
                  fmt: ReportFormat) -> Response:  # fmt: skip
    repo = ReconRepository(session)
    r = await repo.get_run(run_id)
    if r is None or not scope.sees(r.app_id, r.livemode):
        raise NotFound("run", run_id)
    document = reports.run_document(r, await repo.run_breaks(r.id))
    name = f"recon_{r.channel_account_id}_{r.bill_date}_{r.bill}_{r.run_no}"
    headers = {"Content-Disposition": f'attachment; filename="{name}.{fmt}"',
               "Paymux-Report-Sha256": reports.digest(document)}  # fmt: skip
    if fmt == "csv":
        return StreamingResponse(reports.to_csv(document), media_type="text/csv; charset=utf-8",
                                 headers=headers)  # fmt: skip
    if fmt == "xlsx":
        media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        return Response(reports.to_xlsx(document), media_type=media, headers=headers)
    return Response(reports.canonical(document), media_type="application/json", headers=headers)


@operator_router.get("/runs", response_model=ListResponse[RunOut])
async def list_runs(
    _: OperatorDep, session: ReadSessionDep, page: PageDep,
    channel_account_id: Annotated[str | None, Query(max_length=40)] = None,
    bill_date: dt.date | None = None, bill: BillKind | None = None,
) -> ListResponse[RunOut]:  # fmt: skip
    """Runs, newest first."""
    return await _runs(session, OPERATOR, page, channel_account_id, bill_date, bill)


@operator_router.get("/runs/{run_id}", response_model=RunOut)
async def retrieve_run(run_id: str, _: OperatorDep, session: ReadSessionDep) -> RunOut:
    return await _run(session, OPERATOR, run_id)


@operator_router.get("/runs/{run_id}/report")
async def run_report(run_id: str, _: OperatorDep, session: ReadSessionDep,
                     format: ReportFormat = "json") -> Response:  # fmt: skip
    """The run's daily statement and breaks as JSON, CSV or XLSX; the
    ``Paymux-Report-Sha256`` header is the SHA-256 of its canonical JSON (the run's
    ``report_sha256`` when nothing changed since)."""
    return await _report(session, OPERATOR, run_id, format)


# ------------------------------------------------------------------ breaks
async def _breaks(
    session: ReadSessionDep, scope: Scope, page: PageDep, *, account: str | None,
    merchant: str | None, klass: BreakClass | None, priority: int | None,
    state: BreakState | None, older_than_days: int | None,
) -> ListResponse[BreakOut]:  # fmt: skip
    before = None
    if older_than_days is not None:
        before = dt.datetime.now(dt.UTC) - dt.timedelta(days=older_than_days)
    rows, more = await ReconRepository(session).breaks(
        app_id=scope.app_id, livemode=scope.livemode, account_id=account, merchant_id=merchant,
        klass=klass, priority=priority, state=state, opened_before=before, limit=page.limit,
        starting_after=page.starting_after,
    )  # fmt: skip
    return ListResponse[BreakOut](data=[BreakOut.of(b) for b in rows], has_more=more)


@operator_router.get("/breaks", response_model=ListResponse[BreakOut])
async def list_breaks(
    _: OperatorDep, session: ReadSessionDep, page: PageDep,
    channel_account_id: Annotated[str | None, Query(max_length=40)] = None,
    merchant_id: Annotated[str | None, Query(max_length=40)] = None,
    klass: Annotated[BreakClass | None, Query(alias="class")] = None,
    priority: Annotated[int | None, Query(ge=1, le=3)] = None,
    state: BreakState | None = BreakState.open,
    older_than_days: Annotated[int | None, Query(ge=0, le=3650)] = None,
) -> ListResponse[BreakOut]:  # fmt: skip
    """The review queue: breaks by class, priority, age, merchant and channel account (open
    ones by default)."""
    return await _breaks(session, OPERATOR, page, account=channel_account_id,
                         merchant=merchant_id, klass=klass, priority=priority, state=state,
                         older_than_days=older_than_days)  # fmt: skip


@operator_router.get("/breaks/{break_id}", response_model=BreakDetail)
async def retrieve_break(break_id: str, _: OperatorDep, session: ReadSessionDep) -> BreakDetail:
    """A break with its whole history and approvals."""
    return await actions.detail(session, OPERATOR, break_id)


@operator_router.post("/breaks/{break_id}/actions")
async def act_on_break(break_id: str, body: BreakAction, _: OperatorDep, session: SessionDep,
                       actor: ActorHeader = None) -> dict[str, object]:  # fmt: skip
    """Act on a break with a reason: ``link`` (to records), ``mark_received``, ``ignore``,
    ``void``, ``accept`` (until a time; lapses if its class or amount changes), ``adjust``
    (a balanced ledger transaction to suspense or fee rounding) or ``refund`` (a suggested
    refund). A refund, and an adjustment above the account's approval threshold, is only
    requested: it returns the approval, carried out once a second person approves it."""
    b, approval = await actions.act(session, break_id, body, actor=_actor(actor),
                                    scope=OPERATOR)  # fmt: skip
    return {
        "break": BreakOut.of(b).model_dump(mode="json", by_alias=True),
        "approval": ApprovalOut.of(approval).model_dump(mode="json") if approval else None,
    }


@operator_router.post("/approvals/{approval_id}/approve", response_model=ApprovalOut)
async def approve(approval_id: str, body: Decision, _: OperatorDep, session: SessionDep,
                  actor: ActorHeader = None) -> ApprovalOut:  # fmt: skip
    """Approve and carry out a requested action (never by the person who requested it)."""
    _b, approval = await actions.decide(session, approval_id, approve=True, actor=_actor(actor),
                                       reason=body.reason, scope=OPERATOR)  # fmt: skip
    return ApprovalOut.of(approval)


@operator_router.post("/approvals/{approval_id}/reject", response_model=ApprovalOut)
async def reject(approval_id: str, body: Decision, _: OperatorDep, session: SessionDep,
                 actor: ActorHeader = None) -> ApprovalOut:  # fmt: skip
    _b, approval = await actions.decide(session, approval_id, approve=False, actor=_actor(actor),
                                       reason=body.reason, scope=OPERATOR)  # fmt: skip
    return ApprovalOut.of(approval)


# ------------------------------------------------------------------ settings
@operator_router.put("/configs/{channel_account_id}", response_model=ConfigIn)
async def put_config(channel_account_id: str, body: ConfigIn, _: OperatorDep,
                     session: SessionDep) -> ConfigIn:  # fmt: skip
    """How the account is reconciled: the daily job on/off, when it fetches (minutes after the
    end of the bill day; default the channel's publication time), the grace period of records
    missing from a bill, the adjustment amount above which a second approver is needed, and
    what the channel account held before paymux (the funds bill's balance check)."""
    return await actions.configure(session, channel_account_id, body)


# ------------------------------------------------------------------ the merchant's view
@merchant_router.get("/runs", response_model=ListResponse[RunOut])
async def merchant_runs(
    auth: AuthDep, session: ReadSessionDep, page: PageDep,
    channel_account_id: Annotated[str | None, Query(max_length=40)] = None,
    bill_date: dt.date | None = None, bill: BillKind | None = None,
) -> ListResponse[RunOut]:  # fmt: skip
    """Reconciliation runs of this app's channel accounts in this key's mode."""
    scope = Scope(auth.app_id, auth.livemode)
    return await _runs(session, scope, page, channel_account_id, bill_date, bill)


@merchant_router.get("/runs/{run_id}", response_model=RunOut)
async def merchant_run(run_id: str, auth: AuthDep, session: ReadSessionDep) -> RunOut:
    return await _run(session, Scope(auth.app_id, auth.livemode), run_id)


@merchant_router.get("/runs/{run_id}/report")
async def merchant_report(run_id: str, auth: AuthDep, session: ReadSessionDep,
                          format: ReportFormat = "json") -> Response:  # fmt: skip
    return await _report(session, Scope(auth.app_id, auth.livemode), run_id, format)


@merchant_router.get("/breaks", response_model=ListResponse[BreakOut])
async def merchant_breaks(
    auth: AuthDep, session: ReadSessionDep, page: PageDep,
    channel_account_id: Annotated[str | None, Query(max_length=40)] = None,
    klass: Annotated[BreakClass | None, Query(alias="class")] = None,
    priority: Annotated[int | None, Query(ge=1, le=3)] = None,
    state: BreakState | None = BreakState.open,
) -> ListResponse[BreakOut]:  # fmt: skip
    return await _breaks(session, Scope(auth.app_id, auth.livemode), page,
                         account=channel_account_id, merchant=None, klass=klass,
                         priority=priority, state=state, older_than_days=None)  # fmt: skip


@merchant_router.get("/breaks/{break_id}", response_model=BreakDetail)
async def merchant_break(break_id: str, auth: AuthDep, session: ReadSessionDep) -> BreakDetail:
    return await actions.detail(session, Scope(auth.app_id, auth.livemode), break_id)
