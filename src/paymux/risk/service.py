"""Risk lists: made by the platform's operators (``platform``: every merchant's rules may read
them, no merchant may change them) or by a merchant (its own rules only), in one mode. Items are
added one by one, in batches or from a CSV file, always in the list type's normal form
(:mod:`paymux.risk.values`); a batch or a file with one bad value changes nothing."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.kit.cache import TtlCache
from paymux.kit.errors import Conflict, InvalidRequest, NotFound
from paymux.kit.ids import new_id
from paymux.risk import audit, values
from paymux.risk.models import ListType, RiskList, RiskListItem
from paymux.risk.repository import RiskListRepository
from paymux.risk.schemas import ItemIn, ListCreate

PLATFORM = "platform"

lists_cache: TtlCache[tuple[str, bool, frozenset[str]], Mapping[str, frozenset[str]]] = TtlCache(
    "risk_lists"
)
"""What rules see of lists, per merchant, mode and names (:func:`cached_lists`): a change made
in another process counts within a second, in this one at once."""
MAX_IMPORT_ROWS = 100_000
MAX_LISTED_PROBLEMS = 10


@dataclass(frozen=True)
class Owner:
    """Who acts on lists: an operator (``merchant_id`` None, every platform list) or a
    merchant (its own lists, and reading the platform's), in one mode."""

    merchant_id: str | None
    livemode: bool | None
    actor: str

    @property
    def owner(self) -> str:
        return self.merchant_id or PLATFORM

    def readable(self) -> list[str]:
        return [PLATFORM] if self.merchant_id is None else [self.merchant_id, PLATFORM]


def _mode(who: Owner, asked: bool | None) -> bool:
    if who.merchant_id is not None:
        assert who.livemode is not None
        return who.livemode
    if asked is None:
        raise InvalidRequest("livemode_required", "Say which mode the platform list is for.",
                             param="livemode")  # fmt: skip
    return asked


async def create_list(session: AsyncSession, who: Owner, body: ListCreate) -> RiskList:
    livemode = _mode(who, body.livemode)
    found = RiskList(id=new_id("rls"), owner=who.owner, livemode=livemode, name=body.name,
                     type=body.type, description=body.description,
                     created_by=who.actor)  # fmt: skip
    session.add(found)
    try:
        async with session.begin_nested():
            await session.flush()
    except sa.exc.IntegrityError:
        raise Conflict("list_exists", f"A list named {body.name!r} exists already.",
                       param="name") from None  # fmt: skip
    _audit(session, who, found, "list.created", name=found.name, type=found.type)
    return found


def _audit(session: AsyncSession, who: Owner, found: RiskList, action: str, **detail: Any) -> None:
    audit.record(session, owner=found.owner, livemode=found.livemode, actor=who.actor,
                 action=action, object_type="risk.list", object_id=found.id, **detail)  # fmt: skip


async def _add(session: AsyncSession, who: Owner, found: RiskList,
               rows: list[dict[str, Any]], how: str) -> tuple[int, int]:  # fmt: skip
    lists_cache.forget()
    shown = [row["value"] for row in rows[: audit.MAX_VALUES]]
    _audit(session, who, found, "list.items_added", how=how, count=len(rows), values=shown)
    return await RiskListRepository(session).upsert_items(found.id, rows)


async def get_list(
    session: AsyncSession, who: Owner, list_id: str, livemode: bool | None, *,
    changing: bool = False,
) -> RiskList:  # fmt: skip
    """A list the caller may read (or, ``changing``, change: only its owner)."""
    repo = RiskListRepository(session)
    modes = [True, False] if who.merchant_id is None and livemode is None else [
        _mode(who, livemode)]  # fmt: skip
    for mode in modes:
        found = await repo.get(who.readable(), mode, list_id)
        if found is not None:
            if changing and found.owner != who.owner:
                raise NotFound("list", list_id)  # a platform list is read-only to merchants
            return found
    raise NotFound("list", list_id)


def _refuse(problems: Sequence[str]) -> None:
    """Nothing is added when any value is bad: the error names the first ones."""
    if problems:
        shown = "; ".join(problems[:MAX_LISTED_PROBLEMS])
        more = len(problems) - MAX_LISTED_PROBLEMS
        raise InvalidRequest("list_value_invalid", f"Nothing was added. {shown}"
                             + (f"; and {more} more" if more > 0 else ""))  # fmt: skip


def _rows(kind: ListType, items: Sequence[ItemIn], actor: str, *,
          where: Sequence[str]) -> list[dict[str, Any]]:  # fmt: skip
    """The items in normal form, or InvalidRequest naming the bad ones (``where``: how to name
    each, e.g. its line)."""
    rows: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for item, place in zip(items, where, strict=True):
        try:
            form, network = values.normal(kind, item.value)
        except values.ValueInvalid as exc:
            problems.append(f"{place}: {exc}")
            continue
        expires = clock.aware(item.expires_at) if item.expires_at else None
        rows[form] = {"value": form, "network": network, "reason": item.reason,
                      "added_by": actor, "expires_at": expires}  # fmt: skip
    _refuse(problems)
    return list(rows.values())


async def add_items(
    session: AsyncSession, who: Owner, found: RiskList, items: Sequence[ItemIn]
) -> tuple[int, int]:
    rows = _rows(ListType(found.type), items, who.actor,
                 where=[f"items[{n}]" for n in range(len(items))])  # fmt: skip
    return await _add(session, who, found, rows, "api")


def parse_csv(data: bytes) -> tuple[list[ItemIn], list[str]]:
    """A CSV file of items: a header line with ``value`` and ``reason`` (``expires_at``
    optional, ISO 8601), UTF-8. InvalidRequest names every bad line (nothing is added)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest("csv_invalid", "The file is not UTF-8 text.") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or not {"value", "reason"} <= set(reader.fieldnames):
        raise InvalidRequest("csv_invalid", "The first line must name the columns: value, "
                             "reason and, optionally, expires_at.")  # fmt: skip
    items: list[ItemIn] = []
    where: list[str] = []
    problems: list[str] = []
    try:
        for row in reader:
            line = f"line {reader.line_num}"
            if len(items) + len(problems) >= MAX_IMPORT_ROWS:
                raise InvalidRequest("csv_too_large", f"At most {MAX_IMPORT_ROWS} rows a file.")
            try:
                expires = (dt.datetime.fromisoformat(row["expires_at"].strip())
                           if (row.get("expires_at") or "").strip() else None)  # fmt: skip
                items.append(ItemIn(value=row["value"] or "", reason=row["reason"] or "",
                                    expires_at=expires))  # fmt: skip
                where.append(line)
            except (ValueError, TypeError, AttributeError) as exc:
                problems.append(f"{line}: {_short(exc)}")
    except csv.Error as exc:
        raise InvalidRequest("csv_invalid", f"The file is not CSV: {exc}") from None
    _refuse(problems)
    if not items:
        raise InvalidRequest("csv_invalid", "The file has no rows.")
    return items, where


def _short(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg', '')}"
    return str(exc)[:200]


async def import_csv(session: AsyncSession, who: Owner, found: RiskList,
                     data: bytes) -> tuple[int, int]:  # fmt: skip
    items, where = parse_csv(data)
    rows = _rows(ListType(found.type), items, who.actor, where=where)
    return await _add(session, who, found, rows, "csv")


async def remove_item(session: AsyncSession, who: Owner, found: RiskList, value: str) -> str:
    """Remove the item of ``value``; its normal form."""
    try:
        form, _ = values.normal(ListType(found.type), value)
    except values.ValueInvalid as exc:
        raise InvalidRequest("list_value_invalid", str(exc), param="value") from None
    if not await RiskListRepository(session).remove_item(found.id, form):
        raise NotFound("list item", form)
    lists_cache.forget()
    _audit(session, who, found, "list.item_removed", value=form)
    return form


async def check(
    session: AsyncSession, found: RiskList, value: str
) -> tuple[str, RiskListItem | None]:
    """Is ``value`` in the list now (an address: or in one of its networks)? Its normal form
    and the item that holds it."""
    try:
        form, address = values.lookup_forms(ListType(found.type), value)
    except values.ValueInvalid as exc:
        raise InvalidRequest("list_value_invalid", str(exc), param="value") from None
    item = await RiskListRepository(session).holds(found.id, form, address, clock.now())
    return form, item


@dataclass(frozen=True, slots=True)
class _Loaded:
    revision: int
    values: frozenset[str]
    until: dt.datetime | None
    """When its next item expires (then it is read again)."""


_loaded: dict[str, _Loaded] = {}
"""Each list's items as last read, by list id: read again only when its revision moved or an
item expired, so a large list is not reloaded every second — and keeps being the same
frozenset, whose parsed networks (:mod:`paymux.risk.rules`) are cached by it."""
_LOADED_MAX = 10_000


async def cached_lists(
    session: AsyncSession, merchant_id: str, livemode: bool, names: frozenset[str]
) -> Mapping[str, frozenset[str]]:
    """:func:`lists_for`, for the engine's hot path: asked again once a second."""
    if not names:
        return {}
    return await lists_cache.get_or_load(
        (merchant_id, livemode, names), lambda: lists_for(session, merchant_id, livemode, names)
    )


async def lists_for(
    session: AsyncSession, merchant_id: str | None, livemode: bool, names: Collection[str]
) -> dict[str, frozenset[str]]:
    """What a rule's ``list("name")`` sees, for :func:`paymux.risk.rules.evaluate`: the items
    that count now of each named list, as frozensets. A merchant's rules (``merchant_id``) see
    its own lists and the platform's — its own first, when both have the name; the platform's
    rules (None) see the platform's only. A name no list has is an empty list (the rule set's
    validation is where an unknown list is refused). Addresses and networks are the items'
    normal forms: ``ip in list("n")`` matches addresses exactly, ``cidr_match(ip, list("n"))``
    networks too. Which lists exist and their revisions are read each time (one small query);
    a list's items only when it changed or one of them expired."""
    who = Owner(merchant_id, livemode, "")
    repo = RiskListRepository(session)
    rows = await repo.heads(who.readable(), livemode, names)
    heads = {(owner, name): (list_id, revision) for list_id, owner, name, revision in rows}
    now = clock.now()
    out: dict[str, frozenset[str]] = {}
    for name in names:
        head = next((heads[(o, name)] for o in who.readable() if (o, name) in heads), None)
        if head is None:
            out[name] = frozenset()
            continue
        list_id, revision = head
        known = _loaded.get(list_id)
        if known is None or known.revision != revision or (
                known.until is not None and known.until <= now):  # fmt: skip
            values, until = await repo.live_items(list_id, now)
            if len(_loaded) >= _LOADED_MAX:
                _loaded.clear()
            known = _loaded[list_id] = _Loaded(revision, frozenset(values), until)
        out[name] = known.values
    return out
