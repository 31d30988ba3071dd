"""``paymux risk reviews | review … | decision | backtest | changes`` and ``risk ruleset
shadow``: the review queue, decisions, backtests, shadow drafts and the audit trail from the
terminal — the operator's view (every merchant's reviews, the platform's rule sets unless
``--merchant``). Commands register on :data:`paymux.cli.risk.risk_app`."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import typer

from paymux.cli.common import After, Limit, page_of, run
from paymux.cli.output import emit, fail
from paymux.cli.risk import (
    Actor,
    Live,
    Merchant,
    _actor,
    _change,
    _read,
    _rule_set_out,
    risk_app,
    ruleset_app,
)
from paymux.runtime import Runtime

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from paymux.risk.service import Owner

review_app = typer.Typer(help="One risk review: show, assign, approve or decline it.",
                         no_args_is_help=True)  # fmt: skip
risk_app.add_typer(review_app, name="review")

REVIEW_COLUMNS = ("id", "subject_type", "subject_id", "outcome", "state", "assignee",
                  "deadline", "on_expiry")  # fmt: skip
CHANGE_COLUMNS = ("id", "created_at", "actor", "action", "object_type", "object_id")
Reason = Annotated[str, typer.Option("--reason", help="Why (required, kept with the review).")]
State = Annotated[str | None, typer.Option("--state", help="open, approved or declined.")]
Assignee = Annotated[str | None, typer.Option("--to", help="Who looks at it (omit: nobody).")]


def _state(text: str | None) -> Any:
    from paymux.risk.models import ReviewState

    if text is None:
        return None
    try:
        return ReviewState(text)
    except ValueError:
        fail("parameter_invalid", f"--state: open, approved or declined, not {text!r}")


def _when(text: str, option: str) -> dt.datetime:
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        fail("parameter_invalid", f"{option}: not an ISO 8601 time: {text!r}")
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


@risk_app.command("reviews")
def reviews_list(merchant: Merchant = None, state: State = "open", limit: Limit = 20,
                 starting_after: After = None) -> None:  # fmt: skip
    """The review queue, newest first (every merchant's, or one's with ``--merchant``)."""
    from paymux.risk import reviews
    from paymux.risk.repository import DecisionRepository

    wanted = _state(state)

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as session:
            rows, more = await DecisionRepository(session).reviews(
                merchant, None, wanted, limit=limit, starting_after=starting_after)  # fmt: skip
            return page_of([reviews.view(x) for x in rows], more)

    emit(run(go), columns=REVIEW_COLUMNS)


@review_app.command("show")
def review_show(review_id: str) -> None:
    """One review: what it is about, its outcome, deadline and state."""
    from paymux.risk import reviews

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as session:
            return reviews.view(await reviews.get(session, None, None, review_id))

    emit(run(go), title="risk review")


@review_app.command("assign")
def review_assign(
    review_id: str,
    to: Annotated[str | None, typer.Option("--to", help="Who looks at it (omit: nobody).")] = None,
    actor: Actor = "cli",
) -> None:
    """Set (or clear) who looks at an open review."""
    from paymux.risk import reviews

    named = _actor(actor)

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as session:
            found = await reviews.get(session, None, None, review_id, lock=True)
            return reviews.view(await reviews.assign(session, found, to, by=named))

    emit(run(go), title="risk review")


def _close(review_id: str, state: str, reason: str, actor: str,
           add_to_list: tuple[str, str] | None = None) -> None:  # fmt: skip
    from paymux.risk import review_actions, reviews
    from paymux.risk.models import ReviewState
    from paymux.risk.schemas import ListAddition

    if not reason.strip():
        fail("parameter_missing", "--reason: say why.")
    named = _actor(actor)
    addition = (ListAddition(list=add_to_list[0], attribute=add_to_list[1])
                if add_to_list else None)  # fmt: skip

    async def go(rt: Runtime) -> dict[str, Any]:
        closed = await review_actions.close(rt, review_id, ReviewState(state), merchant_id=None,
                                            livemode=None, by=named, reason=reason,
                                            add_to_list=addition)  # fmt: skip
        return {**reviews.view(closed.review), "refund": closed.refund}

    emit(run(go), title="risk review")


@review_app.command("approve")
def review_approve(review_id: str, reason: Reason, actor: Actor = "cli") -> None:
    """Approve: held money is released, money waiting to go out is sent."""
    _close(review_id, "approved", reason, actor)


@review_app.command("decline")
def review_decline(
    review_id: str, reason: Reason, actor: Actor = "cli",
    add_to_list: Annotated[str | None, typer.Option(
        "--add-to-list", help="A list (rls_…) to put one of the decision's values on.")] = None,
    attribute: Annotated[str | None, typer.Option(
        "--attribute", help="With --add-to-list: which value (device_id, ip, …).")] = None,
) -> None:  # fmt: skip
    """Decline: a held or paid payment is refunded in full, money out is cancelled."""
    if (add_to_list is None) != (attribute is None):
        fail("parameter_missing", "--add-to-list and --attribute go together.")
    pair = (add_to_list, attribute) if add_to_list and attribute else None
    _close(review_id, "declined", reason, actor, pair)


@risk_app.command("decision")
def decision_show(decision_id: str) -> None:
    """One decision: the rule sets in force, each rule's result, the features read."""
    from paymux.kit.errors import NotFound
    from paymux.risk import decisions

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as session:
            found = await decisions.get(session, None, None, decision_id)
            if found is None:
                raise NotFound("decision", decision_id)
            return decisions.decision_view(found)

    emit(run(go), title="risk decision")


@risk_app.command("backtest")
def backtest(
    rule_set_id: str,
    start: Annotated[str, typer.Option("--from", help="ISO 8601 start (UTC if no zone).")],
    end: Annotated[str | None, typer.Option("--to", help="ISO 8601 end; default now.")] = None,
    merchant: Merchant = None, live: Live = False,
    limit: Annotated[int, typer.Option(help="At most this many decisions.")] = 50_000,
) -> None:  # fmt: skip
    """Replay a rule set over the stored decisions of a time range (changes nothing)."""
    from paymux.kit import clock
    from paymux.risk import backtests

    since = _when(start, "--from")
    until = _when(end, "--to") if end else clock.now()

    async def work(session: AsyncSession, who: Owner) -> dict[str, Any]:
        report = await backtests.run(session, who, rule_set_id, since, until, limit=limit)
        return dict(report.model_dump(mode="json"))

    emit(_read(merchant, live, work), title="risk backtest")


@ruleset_app.command("shadow")
def rule_set_shadow(
    rule_set_id: str, merchant: Merchant = None, live: Live = False, actor: Actor = "cli",
    on: Annotated[bool, typer.Option("--on/--off", help="Start or stop.")] = True,
) -> None:  # fmt: skip
    """Run a draft in shadow on live traffic (recorded with every decision, deciding nothing)."""
    from paymux.risk import rulesets

    async def work(session: AsyncSession, who: Owner) -> dict[str, Any]:
        return await _rule_set_out(session, await rulesets.shadow(session, who, rule_set_id, on))

    emit(_change(merchant, live, actor, work), title="risk rule set")


@risk_app.command("changes")
def changes(merchant: Merchant = None, limit: Limit = 20, starting_after: After = None) -> None:
    """The audit trail of the owner's lists, rule sets and reviews, newest first."""
    from paymux.risk.repository import DecisionRepository
    from paymux.risk.schemas import ChangeOut

    async def work(session: AsyncSession, who: Owner) -> dict[str, Any]:
        rows, more = await DecisionRepository(session).changes(
            who.owner, limit=limit, starting_after=starting_after)  # fmt: skip
        return page_of([ChangeOut.model_validate(x, from_attributes=True)
                        .model_dump(mode="json") for x in rows], more)  # fmt: skip

    emit(_read(merchant, False, work), columns=CHANGE_COLUMNS)
