"""``/v1/risk/lists`` (a merchant's key: its own lists, in its key's mode, and reading the
platform's) and ``/v1/operator/risk/lists`` (the operator token: the platform's lists, which
every merchant's rules may read and no merchant may change; the ``Paymux-Actor`` header names
who changes them). The same operations on both."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from paymux.kit.errors import InvalidRequest, NotFound
from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import ListResponse, PageDep, ReadSessionDep, RuntimeDep, SessionDep
from paymux.merchants.auth import AuthDep, OperatorDep
from paymux.risk import backtests, decisions, presets, review_actions, reviews, rulesets, service
from paymux.risk.models import ReviewState
from paymux.risk.repository import DecisionRepository, RiskListRepository
from paymux.risk.schemas import (
    BacktestCreate,
    BacktestOut,
    ChangeOut,
    DecisionOut,
    ItemCheck,
    ItemOut,
    ItemRemoved,
    ItemsAdded,
    ItemsIn,
    ListCreate,
    ListOut,
    PublishOptions,
    ReviewAssign,
    ReviewClose,
    ReviewOut,
    RuleSetCreate,
    RuleSetOut,
    ShadowSet,
)
from paymux.risk.service import Owner
from paymux.runtime import Runtime

MAX_CSV_BYTES = 16 * 1024 * 1024

router = APIRouter(prefix="/v1/risk", tags=["risk"], route_class=IdempotentRoute)
operator_router = APIRouter(prefix="/v1/operator/risk", tags=["risk"],
                            route_class=IdempotentRoute)  # fmt: skip


async def _merchant(auth: AuthDep) -> Owner:
    return Owner(auth.merchant_id, auth.livemode, f"merchant:{auth.merchant_id}:{auth.key_id}")


async def _operator(
    _: OperatorDep, actor: Annotated[str | None, Header(alias="Paymux-Actor")] = None
) -> Owner:
    return Owner(None, None, f"operator:{actor.strip()}" if actor and actor.strip() else "")


def _changing(who: Owner) -> Owner:
    if not who.actor or len(who.actor) > 110:
        raise InvalidRequest("actor_required", "Name yourself in the Paymux-Actor header "
                             "(1–100 characters).", param="Paymux-Actor")  # fmt: skip
    return who


def _routes(r: APIRouter, owner: Callable[..., Awaitable[Owner]]) -> None:
    Who = Annotated[Owner, Depends(owner)]
    Mode = Annotated[bool | None, Query(description="Operator: the list's mode, if not both.")]

    @r.post("/lists", status_code=201, response_model=ListOut)
    async def create_list(body: ListCreate, who: Who, session: SessionDep) -> ListOut:
        """A new list (its name is what rules call it by, unique per owner and mode)."""
        return ListOut.of(await service.create_list(session, _changing(who), body))

    @r.get("/lists", response_model=ListResponse[ListOut])
    async def list_lists(
        who: Who, session: ReadSessionDep, page: PageDep, livemode: Mode = None
    ) -> ListResponse[ListOut]:
        """The lists the caller's rules may read (a merchant's: its own and the platform's)."""
        mode = who.livemode if who.livemode is not None else livemode
        rows, more = await RiskListRepository(session).lists(
            who.readable(), mode, limit=page.limit, starting_after=page.starting_after
        )
        return ListResponse[ListOut](data=[ListOut.of(x) for x in rows], has_more=more)

    @r.get("/lists/{list_id}", response_model=ListOut)
    async def retrieve_list(list_id: str, who: Who, session: ReadSessionDep,
                            livemode: Mode = None) -> ListOut:  # fmt: skip
        return ListOut.of(await service.get_list(session, who, list_id, livemode))

    @r.post("/lists/{list_id}/items", response_model=ItemsAdded)
    async def add_items(list_id: str, body: ItemsIn, who: Who, session: SessionDep,
                        livemode: Mode = None) -> ItemsAdded:  # fmt: skip
        """Add up to 1,000 items (a value there already gets the new reason and expiry). One
        bad value and nothing is added."""
        found = await service.get_list(session, _changing(who), list_id, livemode,
                                       changing=True)  # fmt: skip
        added, updated = await service.add_items(session, who, found, body.items)
        return ItemsAdded(list_id=found.id, added=added, updated=updated)

    @r.post("/lists/{list_id}/items/import", response_model=ItemsAdded,
            openapi_extra={"requestBody": {"required": True, "content": {
                "text/csv": {"schema": {"type": "string"}}}}})  # fmt: skip
    async def import_items(list_id: str, request: Request, who: Who, session: SessionDep,
                           livemode: Mode = None) -> ItemsAdded:  # fmt: skip
        """Add items from a CSV file (``text/csv``, UTF-8): a header line naming ``value``,
        ``reason`` and, optionally, ``expires_at`` (ISO 8601); up to 100,000 rows. One bad
        line and nothing is added: the error names the lines."""
        found = await service.get_list(session, _changing(who), list_id, livemode,
                                       changing=True)  # fmt: skip
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_CSV_BYTES:
                raise InvalidRequest("file_too_large", f"At most {MAX_CSV_BYTES} bytes a file.")
        added, updated = await service.import_csv(session, who, found, bytes(data))
        return ItemsAdded(list_id=found.id, added=added, updated=updated)

    @r.get("/lists/{list_id}/items", response_model=ListResponse[ItemOut])
    async def list_items(list_id: str, who: Who, session: ReadSessionDep, page: PageDep,
                         livemode: Mode = None) -> ListResponse[ItemOut]:  # fmt: skip
        found = await service.get_list(session, who, list_id, livemode)
        rows, more = await RiskListRepository(session).items(
            found.id, limit=page.limit, starting_after=page.starting_after
        )
        return ListResponse[ItemOut](data=[ItemOut.of(x) for x in rows], has_more=more)

    @r.delete("/lists/{list_id}/items", response_model=ItemRemoved)
    async def remove_item(list_id: str, who: Who, session: SessionDep,
                          value: Annotated[str, Query(min_length=1, max_length=320)],
                          livemode: Mode = None) -> ItemRemoved:  # fmt: skip
        """Remove the item of ``value`` (given as it was added: it is normalised again)."""
        found = await service.get_list(session, _changing(who), list_id, livemode,
                                       changing=True)  # fmt: skip
        form = await service.remove_item(session, who, found, value)
        return ItemRemoved(list_id=found.id, value=form)

    @r.get("/lists/{list_id}/check", response_model=ItemCheck)
    async def check_value(list_id: str, who: Who, session: ReadSessionDep,
                          value: Annotated[str, Query(min_length=1, max_length=320)],
                          livemode: Mode = None) -> ItemCheck:  # fmt: skip
        """Whether ``value`` is in the list now (an address: or in one of its networks) — what
        a rule's ``list("name")`` sees."""
        found = await service.get_list(session, who, list_id, livemode)
        form, item = await service.check(session, found, value)
        return ItemCheck(list_id=found.id, value=form, listed=item is not None,
                         item=ItemOut.of(item) if item else None)  # fmt: skip


def _rule_set_routes(r: APIRouter, owner: Callable[..., Awaitable[Owner]]) -> None:
    Who = Annotated[Owner, Depends(owner)]

    @r.post("/rule_sets", status_code=201, response_model=RuleSetOut)
    async def create_rule_set(body: RuleSetCreate, who: Who, session: SessionDep) -> RuleSetOut:
        """A draft rule set, every rule validated now (syntax, attributes, functions, types, a
        run on sample input; the lists it reads must exist). Nothing is in force until it is
        published."""
        found = await rulesets.create_draft(session, _changing(who), body)
        return await rulesets.out(session, found)

    @r.get("/rule_sets", response_model=ListResponse[RuleSetOut])
    async def list_rule_sets(who: Who, session: ReadSessionDep,
                             page: PageDep) -> ListResponse[RuleSetOut]:  # fmt: skip
        """The caller's rule sets, newest first: drafts, the one in force, the retired."""
        rows, more = await rulesets.listed(session, who, limit=page.limit,
                                           starting_after=page.starting_after)  # fmt: skip
        return ListResponse[RuleSetOut](data=[await rulesets.out(session, x) for x in rows],
                                        has_more=more)  # fmt: skip

    @r.get("/rule_sets/{rule_set_id}", response_model=RuleSetOut)
    async def retrieve_rule_set(rule_set_id: str, who: Who,
                                session: ReadSessionDep) -> RuleSetOut:  # fmt: skip
        return await rulesets.out(session, await rulesets.get(session, who, rule_set_id))

    @r.post("/rule_sets/{rule_set_id}/publish", response_model=RuleSetOut)
    async def publish_rule_set(rule_set_id: str, who: Who, session: SessionDep,
                               body: PublishOptions | None = None) -> RuleSetOut:  # fmt: skip
        """Put a draft in force as the next version; the version in force before is retired.
        A draft with block rules is first replayed over the last 7 days: if it would have
        blocked more than 5% of that traffic beyond what was blocked, it needs ``confirm``."""
        found = await backtests.publish(session, _changing(who), rule_set_id,
                                        confirm=bool(body and body.confirm))  # fmt: skip
        return await rulesets.out(session, found)

    @r.post("/rule_sets/{rule_set_id}/shadow", response_model=RuleSetOut)
    async def shadow_rule_set(rule_set_id: str, body: ShadowSet, who: Who,
                              session: SessionDep) -> RuleSetOut:  # fmt: skip
        """Run a draft in shadow on live traffic (``enabled: false`` stops): its rules are
        evaluated and recorded with every decision, and decide nothing."""
        found = await rulesets.shadow(session, _changing(who), rule_set_id, body.enabled)
        return await rulesets.out(session, found)

    @r.post("/backtests", response_model=BacktestOut)
    async def create_backtest(body: BacktestCreate, who: Who,
                              session: ReadSessionDep) -> BacktestOut:  # fmt: skip
        """Replay a rule set over the decisions of ``[start, end)`` in place of the one that was
        in force: hits per rule, outcomes, changes against live, overlap with refunds and
        reviews. Changes nothing."""
        return await backtests.run(session, who, body.rule_set, body.start, body.end,
                                   limit=body.limit)  # fmt: skip


def _review_routes(r: APIRouter, owner: Callable[..., Awaitable[Owner]]) -> None:
    Who = Annotated[Owner, Depends(owner)]

    @r.get("/decisions/{decision_id}", response_model=DecisionOut)
    async def retrieve_decision(decision_id: str, who: Who,
                                session: ReadSessionDep) -> DecisionOut:  # fmt: skip
        """One decision: the rule set versions in force, each rule's result, the feature values
        read and the time taken."""
        found = await decisions.get(session, who.merchant_id, who.livemode, decision_id)
        if found is None:
            raise NotFound("decision", decision_id)
        return DecisionOut(**decisions.decision_view(found))

    @r.get("/changes", response_model=ListResponse[ChangeOut])
    async def list_changes(who: Who, session: ReadSessionDep,
                           page: PageDep) -> ListResponse[ChangeOut]:  # fmt: skip
        """The audit trail of the caller's lists, rule sets and reviews, newest first."""
        rows, more = await DecisionRepository(session).changes(
            who.owner, limit=page.limit, starting_after=page.starting_after)  # fmt: skip
        return ListResponse[ChangeOut](
            data=[ChangeOut.model_validate(x, from_attributes=True) for x in rows],
            has_more=more)  # fmt: skip

    @r.get("/reviews", response_model=ListResponse[ReviewOut])
    async def list_reviews(
        who: Who, session: ReadSessionDep, page: PageDep,
        state: Annotated[ReviewState | None, Query(description="open, approved, declined")] = None,
    ) -> ListResponse[ReviewOut]:  # fmt: skip
        """The review queue, newest first."""
        rows, more = await DecisionRepository(session).reviews(
            who.merchant_id, who.livemode, state, limit=page.limit,
            starting_after=page.starting_after,
        )  # fmt: skip
        return ListResponse[ReviewOut](data=[ReviewOut(**reviews.view(x)) for x in rows],
                                       has_more=more)  # fmt: skip

    @r.get("/reviews/{review_id}", response_model=ReviewOut)
    async def retrieve_review(review_id: str, who: Who, session: ReadSessionDep) -> ReviewOut:
        found = await reviews.get(session, who.merchant_id, who.livemode, review_id)
        return ReviewOut(**reviews.view(found))

    @r.post("/reviews/{review_id}/assign", response_model=ReviewOut)
    async def assign_review(review_id: str, body: ReviewAssign, who: Who,
                            session: SessionDep) -> ReviewOut:  # fmt: skip
        found = await reviews.get(session, who.merchant_id, who.livemode, review_id, lock=True)
        assigned = await reviews.assign(session, found, body.assignee, by=_changing(who).actor)
        return ReviewOut(**reviews.view(assigned))

    async def _close(review_id: str, state: ReviewState, body: ReviewClose, who: Owner,
                     rt: Runtime) -> ReviewOut:  # fmt: skip
        closed = await review_actions.close(
            rt, review_id, state, merchant_id=who.merchant_id, livemode=who.livemode,
            by=_changing(who).actor, reason=body.reason, add_to_list=body.add_to_list,
        )  # fmt: skip
        return ReviewOut(**reviews.view(closed.review), refund=closed.refund)

    @r.post("/reviews/{review_id}/approve", response_model=ReviewOut)
    async def approve_review(review_id: str, body: ReviewClose, who: Who,
                             rt: RuntimeDep) -> ReviewOut:  # fmt: skip
        """Approve: held money is released, money waiting to go out is sent."""
        return await _close(review_id, ReviewState.approved, body, who, rt)

    @r.post("/reviews/{review_id}/decline", response_model=ReviewOut)
    async def decline_review(review_id: str, body: ReviewClose, who: Who,
                             rt: RuntimeDep) -> ReviewOut:  # fmt: skip
        """Decline: a held or succeeded payment is refunded in full, money waiting to go out
        is cancelled. ``add_to_list`` puts one of the decision's values on a list."""
        return await _close(review_id, ReviewState.declined, body, who, rt)


def _preset_routes(r: APIRouter, owner: Callable[..., Awaitable[Owner]]) -> None:
    Who = Annotated[Owner, Depends(owner)]

    @r.get("/presets", response_model=ListResponse[presets.PresetOut])
    async def list_presets(_: Who) -> ListResponse[presets.PresetOut]:
        """The starter rule sets paymux ships: each rule with what it catches and why its
        threshold, and the lists the rules read."""
        return ListResponse[presets.PresetOut](
            data=[presets.PresetOut.of(p) for p in presets.PRESETS.values()], has_more=False
        )

    @r.get("/presets/{name}", response_model=presets.PresetOut)
    async def retrieve_preset(name: str, _: Who) -> presets.PresetOut:
        return presets.PresetOut.of(presets.get_preset(name))

    @r.post("/presets/{name}/apply", status_code=201, response_model=RuleSetOut)
    async def apply_preset(name: str, who: Who, session: SessionDep,
                           body: presets.PresetApply | None = None) -> RuleSetOut:  # fmt: skip
        """Make the lists the preset reads (empty, where the caller's rules cannot read one of
        that name) and a draft rule set of its rules, noted ``preset <name> v<version>``.
        Nothing is in force until the draft is published; applying again makes another
        draft. The operator names the mode (``livemode``)."""
        found = await presets.apply_preset(session, _changing(who), name,
                                           livemode=body.livemode if body else None)  # fmt: skip
        return await rulesets.out(session, found)


_routes(router, _merchant)
_review_routes(router, _merchant)
_review_routes(operator_router, _operator)
_rule_set_routes(router, _merchant)
_preset_routes(router, _merchant)
_rule_set_routes(operator_router, _operator)
_routes(operator_router, _operator)
_preset_routes(operator_router, _operator)
