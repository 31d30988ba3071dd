"""Velocity counters and links: counting events per subject in time buckets, and reading the
``count_…``/``sum_…`` and ``distinct_…`` attributes of :mod:`paymux.risk.attributes` from them.

**Windows.** Every event is added to a minute, an hour and a day bucket of each subject it
knows. A window reads one resolution — 10 m and 1 h minute buckets, 24 h and 7 d hour buckets,
30 d day buckets (:data:`WINDOWS`, derived from the window's length) — and sums the buckets
whose start lies within it: start ≥ ``at`` − window. The current bucket is always in; the
oldest one straddling the edge is out, so a window covers between its length less one bucket
and its length (a 1 h window at 10:30:20 counts from 09:31:00). Links keep when each pair was
last seen, to the minute; a distinct count counts the pairs last seen ≥ ``at`` − window.

**Scopes.** A subject's value is kept only as :func:`subject_key`, a hash of the mode, the
subject and the value in its scope: a customer id and a SKU are the merchant's own (the same
id at two merchants is two subjects); a device, an IP and a payer account are the platform's
(the same device at many merchants is one subject — the 刷单 signal); the merchant is its id.
Test mode never counts toward live mode, nor live toward test.

Names are parsed from the tables of :mod:`paymux.risk.attributes`, never listed here: a new
window, subject or measure there is counted and read here with no change (a subject needs a
field of :class:`Subjects`, checked when this module loads).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.kit.db import Database, after_commit
from paymux.risk.attributes import LINK_WINDOWS, LINKS, MEASURES, SUBJECTS, VELOCITY_WINDOWS
from paymux.risk.features.models import Resolution
from paymux.risk.features.repository import CustomerRef, FeatureRepository, Window

KEY_CHARS = 32
"""Hex digits of SHA-256 kept as a subject's key (128 bits: no collisions in practice)."""


@dataclass(frozen=True, slots=True)
class Subjects:
    """What an event is about: its merchant and mode, and each subject value it knows (None,
    or an empty string, for one it does not). Field names are the subject names of
    :data:`paymux.risk.attributes.SUBJECTS` (``merchant`` is ``merchant_id``)."""

    merchant_id: str
    livemode: bool
    customer: str | None = None
    device: str | None = None
    ip: str | None = None
    payer_account: str | None = None
    sku: str | None = None


_FIELD = {s.name: "merchant_id" if s.name == "merchant" else s.name for s in SUBJECTS}
_MISSING = set(_FIELD.values()) - {f.name for f in fields(Subjects)}
if _MISSING:  # a subject added to attributes.py needs its field here before anything runs
    raise RuntimeError(f"Subjects has no field for the subjects {sorted(_MISSING)}")

_MERCHANT_SCOPED = frozenset({"customer", "sku"})
"""Subjects whose values are the merchant's own ids: scoped by the merchant."""

MEASURE_NOUNS: frozenset[str] = frozenset(m.noun for m in MEASURES)


# -- windows and names ------------------------------------------------------------------------

_UNITS = {"m": 60, "h": 3600, "d": 86400}


def _length(window: str) -> dt.timedelta:
    match = re.fullmatch(r"([1-9][0-9]*)([mhd])", window)
    if match is None:
        raise ValueError(f"not a window: {window!r}")
    return dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _resolution(length: dt.timedelta) -> Resolution:
    if length <= dt.timedelta(hours=1):
        return Resolution.minute
    if length <= dt.timedelta(days=7):
        return Resolution.hour
    return Resolution.day


WINDOWS: Mapping[str, tuple[dt.timedelta, Resolution]] = MappingProxyType(
    {w: (_length(w), _resolution(_length(w))) for w in VELOCITY_WINDOWS}
)
"""Each velocity window's length and the bucket resolution it reads."""

LINK_LENGTHS: Mapping[str, dt.timedelta] = MappingProxyType({w: _length(w) for w in LINK_WINDOWS})


@dataclass(frozen=True, slots=True)
class VelocityName:
    """A parsed ``count_<measure>_<subject>_<window>`` / ``sum_…`` name."""

    name: str
    aggregate: str
    """``count`` or ``sum``."""
    measure: str
    subject: str
    window: str


@dataclass(frozen=True, slots=True)
class LinkName:
    """A parsed ``distinct_<counted>_per_<per>_<window>`` name (subjects by their names)."""

    name: str
    counted: str
    per: str
    window: str


_PLURAL = {f"{s.name}s": s.name for s in SUBJECTS}
"""A link counts ``customers``, ``devices``, ``payer_accounts``: the subjects' plurals."""

_VELOCITY: Mapping[str, VelocityName] = MappingProxyType({
    v.name: v
    for m in MEASURES
    for agg in (("count", "sum") if m.sum else ("count",))
    for s in SUBJECTS
    for w in VELOCITY_WINDOWS
    for v in (VelocityName(f"{agg}_{m.noun}_{s.name}_{w}", agg, m.noun, s.name, w),)
})  # fmt: skip
_LINKS: Mapping[str, LinkName] = MappingProxyType({
    f"distinct_{link.counted}_per_{link.per}_{w}": LinkName(
        f"distinct_{link.counted}_per_{link.per}_{w}", _PLURAL[link.counted], link.per, w)
    for link in LINKS
    for w in LINK_WINDOWS
})  # fmt: skip
_PAIRS: tuple[tuple[str, str], ...] = tuple(
    dict.fromkeys((_PLURAL[link.counted], link.per) for link in LINKS)
)
"""Every (counted, per) subject pair a link is kept for."""


def velocity_names(names: Iterable[str]) -> list[VelocityName]:
    """The velocity attribute names among ``names``, parsed (other names ignored)."""
    return [_VELOCITY[n] for n in dict.fromkeys(names) if n in _VELOCITY]


def link_names(names: Iterable[str]) -> list[LinkName]:
    """The link attribute names among ``names``, parsed (other names ignored)."""
    return [_LINKS[n] for n in dict.fromkeys(names) if n in _LINKS]


# -- keys -------------------------------------------------------------------------------------


def subject_key(subject: str, value: str, *, merchant_id: str, livemode: bool) -> str:
    """What a subject's value is kept as: a hash of the mode, the subject and the value in its
    scope (the merchant, for customers and SKUs). An IP is hashed in its canonical form, so
    ``2001:DB8::1`` and ``2001:db8::1`` are one subject."""
    if subject == "ip":
        value = _canonical_ip(value)
    scope = merchant_id if subject in _MERCHANT_SCOPED else ""
    text = "\x1f".join(("live" if livemode else "test", subject, scope, value))
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_CHARS]


def _canonical_ip(value: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return value  # counted as given: a rule may still want to see it repeat
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def subject_keys(subjects: Subjects) -> dict[str, str]:
    """The key of every subject ``subjects`` knows, by subject name."""
    out: dict[str, str] = {}
    for subject, name in _FIELD.items():
        value: Any = getattr(subjects, name)
        text = value.strip() if isinstance(value, str) else ""
        if text:
            out[subject] = subject_key(subject, text, merchant_id=subjects.merchant_id,
                                       livemode=subjects.livemode)  # fmt: skip
    return out


def _bucket(at: dt.datetime, resolution: Resolution) -> dt.datetime:
    seconds = int(at.timestamp()) // resolution.seconds * resolution.seconds
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


# -- the service ------------------------------------------------------------------------------


def _check(measure: str, amount: int) -> None:
    if measure not in MEASURE_NOUNS:
        raise ValueError(f"not a measure: {measure!r}")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValueError(f"amount must be an int ≥ 0 of minor units, not {amount!r}")


async def record(
    session: AsyncSession,
    subjects: Subjects,
    measure: str,
    amount: int,
    at: dt.datetime,
    *,
    only: Collection[str] | None = None,
    undo: bool = False,
) -> None:
    """Count one event of ``measure`` (a MEASURES noun) with ``amount`` for every subject that
    is known, at every resolution, and touch every link whose two subjects are known.

    Two statements (one round trip each): every counter row in one upsert, every link in
    another. The rows stay locked until ``session`` commits — a merchant's own counter is
    touched by each of its payments, so call this late in the transaction, or after it with
    :func:`record_after_commit`. ``amount``: minor units, ≥ 0 (0 for measures with no sum).
    ``only``: count these subjects alone (the links still join every known subject) — a
    success counts the payer, whose other subjects were counted when it was created.
    ``undo``: take back an event counted before at ``at`` (a payout that failed no longer
    uses up its source's limits): the same buckets, less one and less ``amount``; no links."""
    _check(measure, amount)
    sign = -1 if undo else 1
    at = clock.aware(at)
    keys = subject_keys(subjects)
    counters = sorted(
        ({"subject": subject, "key": key, "measure": measure, "resolution": res.value,
          "bucket_start": _bucket(at, res), "count": sign, "total": sign * amount}
         for subject, key in keys.items() if only is None or subject in only
         for res in Resolution),
        key=lambda r: (r["key"], r["subject"], r["resolution"]),
    )  # fmt: skip
    repo = FeatureRepository(session)
    await repo.add_counts(counters)
    if undo:
        return
    seen = _bucket(at, Resolution.minute)
    links = sorted(
        ({"per_subject": per, "per_key": keys[per], "counted_subject": counted,
          "counted_key": keys[counted], "first_seen": seen, "last_seen": seen}
         for counted, per in _PAIRS if per in keys and counted in keys),
        key=lambda r: (r["per_key"], r["counted_key"], r["per_subject"]),
    )  # fmt: skip
    await repo.touch_links(links)


def record_after_commit(
    session: AsyncSession,
    subjects: Subjects,
    measure: str,
    amount: int,
    at: dt.datetime,
    *,
    only: Collection[str] | None = None,
) -> None:
    """:func:`record` once ``session``'s transaction has committed (never if it rolls back),
    each statement atomic by itself (:meth:`Database.statement`): the counter rows are then
    locked for one statement, not for the rest of a payment's transaction. A crash between
    the two commits loses that event's count — acceptable for a risk signal, never for
    money."""
    _check(measure, amount)  # refuse now: after the commit, an error is only logged

    async def work(db: Database) -> None:
        async with db.statement() as later:
            await record(later, subjects, measure, amount, at, only=only)

    after_commit(session, work)


RETENTION: Mapping[Resolution, dt.timedelta] = MappingProxyType({
    resolution: max(length for length, r in WINDOWS.values() if r is resolution)
    for resolution in {r for _, r in WINDOWS.values()}
})  # fmt: skip
"""How long a bucket of each resolution is read: its widest window (older ones are purged)."""


async def purge(session: AsyncSession, at: dt.datetime, *, limit: int = 10_000) -> int:
    """Delete what no window reads any more at ``at``: buckets older than their resolution's
    widest window, links last seen before the widest link window. At most ``limit`` rows of
    each resolution and of links, so a transaction stays short; returns how many were
    deleted — the caller (a scheduled job) repeats, each time in a transaction of its own,
    until it is 0."""
    at = clock.aware(at)
    repo = FeatureRepository(session)
    deleted = 0
    for resolution, kept in sorted(RETENTION.items()):
        deleted += await repo.purge_counters(resolution, at - kept, limit)
    if LINK_LENGTHS:
        deleted += await repo.purge_links(at - max(LINK_LENGTHS.values()), limit)
    return deleted


async def read(
    session: AsyncSession, subjects: Subjects, names: Collection[str], at: dt.datetime
) -> dict[str, int]:
    """Values of the velocity and link attribute names among ``names`` (other names ignored);
    a subject that is unknown gives 0. One statement for all of them."""
    values, _ = await read_with_customer(session, subjects, names, at, None)
    return values


async def read_with_customer(
    session: AsyncSession,
    subjects: Subjects,
    names: Collection[str],
    at: dt.datetime,
    customer: CustomerRef | None,
) -> tuple[dict[str, int], tuple[dt.datetime, dt.datetime | None] | None]:
    """:func:`read`, and in the same statement the customer's first sight and first payment
    (``customer``: merchant, mode, customer id), when asked: a screening's one round trip."""
    at = clock.aware(at)
    keys = subject_keys(subjects)
    wanted = velocity_names(names)
    linked = link_names(names)
    out = {n.name: 0 for n in wanted} | {n.name: 0 for n in linked}
    known = [n for n in wanted if n.subject in keys]
    pairs = [link for link in linked if link.per in keys]
    windows = [Window(w, WINDOWS[w][1], at - WINDOWS[w][0])
               for w in dict.fromkeys(n.window for n in known)]  # fmt: skip
    starts = {w: at - LINK_LENGTHS[w] for w in dict.fromkeys(p.window for p in pairs)}
    found = await FeatureRepository(session).read(
        {n.subject: keys[n.subject] for n in known}, {n.measure for n in known}, windows, at,
        {(p.per, keys[p.per], p.counted) for p in pairs}, starts, customer,
    )  # fmt: skip
    for v in known:
        count, total = found.sums.get((v.subject, v.measure), {}).get(v.window, (0, 0))
        out[v.name] = count if v.aggregate == "count" else total
    for p in pairs:
        out[p.name] = found.counts.get((p.per, p.counted), {}).get(p.window, 0)
    return out, found.customer
