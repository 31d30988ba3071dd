"""``paymux risk …``: risk lists, rule sets and presets from the terminal — the operator's view.

Every command acts on the platform's own lists and rule sets (which every merchant's rules
read) by default, or with ``--merchant mch_…`` on that merchant's own, in one mode (``--test``,
the default, or ``--live``), as the API would for that owner. The commands call the risk
services directly, in one transaction each, never over HTTP; changes name their person with
``--actor`` (kept as ``operator:<actor>`` on what they make). A list is named by its id
(``rls_…``) or by its name (the owner's own first, as rules see it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from paymux.cli.common import After, Limit, page_of, parse_body, run
from paymux.cli.output import emit, fail
from paymux.runtime import Runtime

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from paymux.risk.models import RiskList, RuleSet
    from paymux.risk.service import Owner

risk_app = typer.Typer(help="Risk control (风控): lists, rule sets, presets.",
                       no_args_is_help=True)  # fmt: skip
list_app = typer.Typer(help="One risk list: create it; add, import, remove and check values.",
                       no_args_is_help=True)  # fmt: skip
ruleset_app = typer.Typer(help="One rule set: show it, create a draft from a file, publish it.",
                          no_args_is_help=True)  # fmt: skip
preset_app = typer.Typer(help="One preset (a starter rule set): show it, apply it as a draft.",
                         no_args_is_help=True)  # fmt: skip
risk_app.add_typer(list_app, name="list")
risk_app.add_typer(ruleset_app, name="ruleset")
risk_app.add_typer(preset_app, name="preset")

Merchant = Annotated[str | None, typer.Option(
    "--merchant", help="A merchant's own (mch_…); default: the platform's.")]  # fmt: skip
Live = Annotated[bool, typer.Option("--live/--test", "--livemode",
                                    help="Live-mode or test-mode objects.")]  # fmt: skip
Actor = Annotated[str, typer.Option("--actor", help="Who you are (recorded with the change).")]
ListRef = Annotated[str, typer.Argument(help="The list: its id (rls_…) or its name.")]
Value = Annotated[str, typer.Argument(help="The value, in the list's type (an IP or CIDR, an "
                                      "id, an e-mail or phone, a region code…).")]  # fmt: skip
LIST_COLUMNS = ("id", "owner", "livemode", "name", "type", "description", "created_by")
RULE_SET_COLUMNS = ("id", "owner", "livemode", "version", "state", "note", "created_by",
                    "published_at")  # fmt: skip
PRESET_COLUMNS = ("name", "version", "title", "note")


def _actor(actor: str) -> str:
    if not actor.strip() or len(actor) > 100:
        fail("actor_required", "--actor: 1–100 characters.")
    return f"operator:{actor.strip()}"


async def _owner(session: AsyncSession, merchant: str | None, live: bool, actor: str) -> Owner:
    """The platform (mode given: the commands act in one mode) or an existing merchant."""
    from paymux.kit.errors import NotFound
    from paymux.merchants.models import Merchant as MerchantRow
    from paymux.risk.service import Owner

    if merchant is not None and await session.get(MerchantRow, merchant) is None:
        raise NotFound("merchant", merchant)
    return Owner(merchant, live, actor)


async def _list(session: AsyncSession, who: Owner, ref: str, *, changing: bool = False) -> RiskList:
    """The list ``ref`` (an id, or a name: the owner's own before the platform's) that ``who``
    may read — or, ``changing``, change (only its owner)."""
    from paymux.kit.errors import NotFound
    from paymux.risk import service
    from paymux.risk.repository import RiskListRepository

    assert who.livemode is not None
    if ref.startswith("rls_"):
        return await service.get_list(session, who, ref, who.livemode, changing=changing)
    found = sorted(await RiskListRepository(session).named(who.readable(), who.livemode, [ref]),
                   key=lambda x: x.owner != who.owner)  # fmt: skip
    if not found or (changing and found[0].owner != who.owner):
        raise NotFound("list", ref)
    return found[0]


def _change(merchant: str | None, live: bool, actor: str, work: Any) -> Any:
    """Run ``work(session, who)`` in one transaction as the owner."""
    named = _actor(actor)

    async def go(rt: Runtime) -> Any:
        async with rt.db.transaction() as session:
            return await work(session, await _owner(session, merchant, live, named))

    return run(go)


def _read(merchant: str | None, live: bool, work: Any) -> Any:
    async def go(rt: Runtime) -> Any:
        async with rt.db.read() as session:
            return await work(session, await _owner(session, merchant, live, ""))

    return run(go)


def _dump(model: Any) -> dict[str, Any]:
    return dict(model.model_dump(mode="json"))


# -- lists -------------------------------------------------------------------------------------


@risk_app.command("lists")
def lists(merchant: Merchant = None, live: Live = False, limit: Limit = 50,
          starting_after: After = None) -> None:  # fmt: skip
    """The lists the owner's rules may read (a merchant's: its own and the platform's)."""
    from paymux.risk.repository import RiskListRepository
    from paymux.risk.schemas import ListOut

    async def work(session: AsyncSession, who: Owner) -> dict[str, Any]:
        rows, more = await RiskListRepository(session).lists(
            who.readable(), live, limit=limit, starting_after=starting_after
        )
        return page_of([_dump(ListOut.of(x)) for x in rows], more)

    emit(_read(merchant, live, work), columns=LIST_COLUMNS)


@list_app.command("create")
def list_create(
    name: Annotated[str, typer.Argument(help='What rules call it by: list("name").')],
    type: Annotated[str, typer.Option("--type", help="ip, customer_id, device_id, "
                                      "payer_account, email_hash, phone_hash, sku or region.")],
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    merchant: Merchant = None, live: Live = False, actor: Actor = "cli",
) -> None:  # fmt: skip
    """A new, empty list (its name is unique per owner and mode)."""
    from paymux.risk import service
    from paymux.risk.schemas import ListCreate, ListOut

    body = parse_body(ListCreate, name=name, type=type, description=description, livemode=live)

    async def work(session: AsyncSession, who: Owner) -> dict[str, Any]:
        return _dump(ListOut.of(await service.create_list(session, who, body)))

    emit(_change(merchant, live, actor, work), title="risk list")


@list_app.command("add")
def list_add(
    ref: ListRef, value: Value,
    reason: Annotated[str, typer.Option("--reason", help="Why it is listed (kept with it).")],
    expires: Annotated[str | None, typer.Option(
        "--expires", help="Until when it counts (ISO 8601); default: until removed.")] = None,
    merchant: Merchant = None, live: Live = False, actor: Actor = "cli",
) -> None:  # fmt: skip
    """Add a value (one there already gets the new reason and expiry)."""
    from paymux.risk import service
    from paymux.risk.schemas import ItemsAdded, ItemsIn

    body = parse_body(ItemsIn, items=[{"value": value, "reason": reason, "expires_at": expires}])

    async def work(session: AsyncSession, who: Owner) -> dict[str, Any]:
        found = await _list(session, who, ref, changing=True)
        added, updated = await service.add_items(session, who, found, body.items)
        return _dump(ItemsAdded(list_id=found.id, added=added, updated=updated))

    emit(_change(merchant, live, actor, work), title="risk list add")


@list_app.command("import")
def list_import(
    ref: ListRef,
    file: Annotated[Path, typer.Argument(help="A UTF-8 CSV file: a header line naming value, "
                                         "reason and, optionally, expires_at.",
                                         exists=True, dir_okay=False, readable=True)],
    merchant: Merchant = None, live: Live = False, actor: Actor = "cli",
) -> None:  # fmt: skip
    """Add every row of a CSV file — or, when one line is bad, none (the error names the
    lines)."""
    from paymux.risk import service
    from paymux.risk.endpoints import MAX_CSV_BYTES
    from paymux.risk.schemas import ItemsAdded

    if file.stat().st_size > MAX_CSV_BYTES:
        fail("file_too_large", f"{file}: at most {MAX_CSV_BYTES} bytes a file.")
    data = file.read_bytes()

    async def work(session: AsyncSession, who: Owner) -> dict[str, Any]:
        found = await _list(session, who, ref, changing=True)
        added, updated = await service.import_csv(session, who, found, data)
        return _dump(ItemsAdded(list_id=found.id, added=added, updated=updated))

    emit(_change(merchant, live, actor, work), title="risk list import")


@list_app.command("remove")
def list_remove(ref: ListRef, value: Value, merchant: Merchant = None, live: Live = False,
                actor: Actor = "cli") -> None:  # fmt: skip
    """Remove the item of a value (given as it was added: it is normalised again)."""
    from paymux.risk import service
    from paymux.risk.schemas import ItemRemoved

    async def work(session: AsyncSession, who: Owner) -> dict[str, Any]:
        found = await _list(session, who, ref, changing=True)
        form = await service.remove_item(session, who, found, value)
        return _dump(ItemRemoved(list_id=found.id, value=form))

    emit(_change(merchant, live, actor, work), title="risk list remove")


@list_app.command("check")
def list_check(ref: ListRef, value: Value, merchant: Merchant = None, live: Live = False) -> None:
    """Whether a value is in the list now (an address: or in one of its networks), as a
    rule's ``list("name")`` sees it."""
    from paymux.risk import service
    from paymux.risk.schemas import ItemCheck, ItemOut

    async def work(session: AsyncSession, who: Owner) -> dict[str, Any]:
        found = await _list(session, who, ref)
        form, item = await service.check(session, found, value)
        return _dump(ItemCheck(list_id=found.id, value=form, listed=item is not None,
                               item=ItemOut.of(item) if item else None))  # fmt: skip

    emit(_read(merchant, live, work), title="risk list check")


@list_app.command("items")
def list_items(ref: ListRef, merchant: Merchant = None, live: Live = False, limit: Limit = 50,
               starting_after: After = None) -> None:  # fmt: skip
    """The list's items, oldest first."""
    from paymux.risk.repository import RiskListRepository
    from paymux.risk.schemas import ItemOut

    async def work(session: AsyncSession, who: Owner) -> dict[str, Any]:
        found = await _list(session, who, ref)
        rows, more = await RiskListRepository(session).items(
            found.id, limit=limit, starting_after=starting_after
        )
        return page_of([_dump(ItemOut.of(x)) for x in rows], more)

    emit(_read(merchant, live, work), columns=("id", "value", "network", "reason", "added_by",
                                               "expires_at"))  # fmt: skip


# -- rule sets ---------------------------------------------------------------------------------


async def _rule_set_out(session: AsyncSession, found: RuleSet) -> dict[str, Any]:
    from paymux.risk import rulesets

    return _dump(await rulesets.out(session, found))


@risk_app.command("rulesets")
def rule_sets(merchant: Merchant = None, live: Live = False, limit: Limit = 20,
              starting_after: After = None) -> None:  # fmt: skip
    """The owner's rule sets, newest first: drafts, the one in force, the retired."""
    from paymux.risk import rulesets

    async def work(session: AsyncSession, who: Owner) -> dict[str, Any]:
        rows, more = await rulesets.listed(session, who, limit=limit,
                                           starting_after=starting_after)  # fmt: skip
        return page_of([await _rule_set_out(session, x) for x in rows], more)

    emit(_read(merchant, live, work), columns=RULE_SET_COLUMNS)


@ruleset_app.command("show")
def rule_set_show(rule_set_id: str, merchant: Merchant = None, live: Live = False) -> None:
    """One rule set with its rules (what each reads: attributes, lists)."""
    from paymux.risk import rulesets

    async def work(session: AsyncSession, who: Owner) -> dict[str, Any]:
        return await _rule_set_out(session, await rulesets.get(session, who, rule_set_id))

    emit(_read(merchant, live, work), title="risk rule set")


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        fail("parameter_invalid", f"{path}: not a JSON file ({exc})")
    if not isinstance(data, dict):
        fail("parameter_invalid", f'{path}: not a JSON object (a rule set: {{"rules": […]}})')
    return data


@ruleset_app.command("create")
def rule_set_create(
    file: Annotated[Path, typer.Argument(help="A JSON rule set as the API takes it: rules, "
                                         "note, review_score, block_score.",
                                         exists=True, dir_okay=False, readable=True)],
    merchant: Merchant = None, live: Live = False, actor: Actor = "cli",
) -> None:  # fmt: skip
    """A draft rule set, every rule validated now (a bad one is named by its index, with the
    code and message). Nothing is in force until it is published."""
    from paymux.risk import rulesets
    from paymux.risk.schemas import RuleSetCreate

    data = _load(file)
    if data.get("livemode", live) != live:
        fail("parameter_invalid", f"{file} says livemode {data['livemode']}; the command acts "
             f"in {'live' if live else 'test'} mode (--live/--test).")  # fmt: skip
    body = parse_body(RuleSetCreate, **{**data, "livemode": live})

    async def work(session: AsyncSession, who: Owner) -> dict[str, Any]:
        return await _rule_set_out(session, await rulesets.create_draft(session, who, body))

    emit(_change(merchant, live, actor, work), title="risk rule set")


Confirm = Annotated[bool, typer.Option(
    "--confirm", help="Publish although its block rules would have blocked much of last "
    "week's traffic.")]  # fmt: skip


@ruleset_app.command("publish")
def rule_set_publish(
    rule_set_id: str,
    merchant: Merchant = None,
    live: Live = False,
    actor: Actor = "cli",
    confirm: Confirm = False,
) -> None:
    """Put a draft in force as the next version; the version in force before is retired. A
    draft with block rules is replayed over the last 7 days first (see docs/risk.md)."""
    from paymux.risk import backtests

    async def work(session: AsyncSession, who: Owner) -> dict[str, Any]:
        found = await backtests.publish(session, who, rule_set_id, confirm=confirm)
        return await _rule_set_out(session, found)

    emit(_change(merchant, live, actor, work), title="risk rule set")


# -- presets -----------------------------------------------------------------------------------


@risk_app.command("presets")
def presets_list() -> None:
    """The starter rule sets paymux ships (``paymux risk preset show NAME`` for the rules)."""
    from paymux.risk.presets import PRESETS, PresetOut

    rows = [_dump(PresetOut.of(p)) for p in PRESETS.values()]
    emit(page_of(rows, False), columns=PRESET_COLUMNS)


@preset_app.command("show")
def preset_show(name: str) -> None:
    """A preset: each rule with what it catches and why its threshold, and the lists it reads."""
    from paymux.kit.errors import NotFound
    from paymux.risk.presets import PresetOut, get_preset

    try:
        emit(_dump(PresetOut.of(get_preset(name))), title=f"risk preset {name}")
    except NotFound as exc:
        fail(exc.code, exc.message)


@preset_app.command("apply")
def preset_apply(name: str, merchant: Merchant = None, live: Live = False,
                 actor: Actor = "cli") -> None:  # fmt: skip
    """Make the lists the preset reads (empty, where the owner's rules cannot read one of that
    name) and a draft rule set of its rules; review it, then ``paymux risk ruleset publish``."""
    from paymux.risk.presets import apply_preset

    async def work(session: AsyncSession, who: Owner) -> dict[str, Any]:
        return await _rule_set_out(session, await apply_preset(session, who, name,
                                                               livemode=live))  # fmt: skip

    emit(_change(merchant, live, actor, work), title="risk rule set")
