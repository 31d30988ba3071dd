"""The client IP's region (``ip_region``) from an offline database: no request leaves the
gateway to look an address up, and a lookup is a binary search in memory.

The database is a CSV file of ``network,region`` lines: an IPv4 or IPv6 network in CIDR form
and an ISO 3166-2 subdivision (``CN-44``) or an ISO 3166-1 country (``US``). Lines starting
with ``#`` are comments; a ``network,region`` header line is optional. Networks may nest —
the most specific one wins (``198.51.100.128/25`` inside ``198.51.100.0/24``). The package
ships a tiny one of documentation ranges only, for tests and the demo
(``data/ip_regions.csv``); a real one is chosen by the ``PAYMUX_RISK_IP_DB`` setting, which
the caller passes as ``path``. A file is read once per process (per path) and flattened into
sorted, disjoint integer ranges, one table per IP version.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

_REGION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")

BUNDLED = "ip_regions.csv"
"""The packaged test/demo database (``paymux/risk/features/data/``)."""


class RegionDatabaseInvalid(ValueError):
    """A line of the database that is not ``network,region`` (the message names it): a
    broken database fails when loaded, never by answering wrong regions."""


@dataclass(frozen=True, slots=True)
class _Table:
    """Disjoint ranges of one IP version, sorted: ``starts[i]``…``ends[i]`` is ``regions[i]``."""

    starts: list[int]
    ends: list[int]
    regions: list[str]

    def find(self, address: int) -> str | None:
        i = bisect.bisect_right(self.starts, address) - 1
        return self.regions[i] if i >= 0 and address <= self.ends[i] else None


@dataclass(frozen=True, slots=True)
class RegionDatabase:
    v4: _Table
    v6: _Table

    def region_of(self, ip: str) -> str | None:
        """The region of ``ip`` (IPv4, IPv6, or IPv4-mapped IPv6), None when no network holds
        it or it is not an address."""
        try:
            address = ipaddress.ip_address(ip.strip())
        except (ValueError, AttributeError):
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        table = self.v4 if address.version == 4 else self.v6
        return table.find(int(address))


def parse(lines: Iterable[str], *, source: str = "<csv>") -> RegionDatabase:
    """A database from the CSV's lines (see the module's docstring for the format)."""
    networks: dict[int, list[tuple[int, int, int, str]]] = {4: [], 6: []}
    header_allowed = True
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        # Two plain fields (no commas inside): split, rather than a CSV reader, so a
        # country database of half a million lines loads in seconds.
        cells = [cell.strip().strip('"').strip() for cell in text.split(",")]
        if header_allowed:
            header_allowed = False
            if [c.lower() for c in cells] == ["network", "region"]:
                continue
        if len(cells) != 2:
            raise RegionDatabaseInvalid(f"{source} line {number}: expected network,region")
        try:
            network = ipaddress.ip_network(cells[0], strict=False)
        except ValueError:
            raise RegionDatabaseInvalid(
                f"{source} line {number}: not an IP network: {cells[0][:60]!r}"
            ) from None
        region = cells[1].upper()
        if not _REGION.match(region):
            raise RegionDatabaseInvalid(
                f"{source} line {number}: not an ISO 3166 region code: {cells[1][:40]!r}"
            )
        start, end = int(network.network_address), int(network.broadcast_address)
        networks[network.version].append((start, -end, number, region))
    return RegionDatabase(_flatten(networks[4]), _flatten(networks[6]))


def _flatten(networks: list[tuple[int, int, int, str]]) -> _Table:
    """Nested or disjoint networks (CIDR networks never partly overlap) as disjoint ranges,
    the innermost network's region winning; of one network listed twice, the later line.
    ``networks``: (start, -end, line, region)."""
    table = _Table([], [], [])

    def emit(start: int, end: int, region: str) -> None:
        if start <= end:
            table.starts.append(start)
            table.ends.append(end)
            table.regions.append(region)

    open_: list[tuple[int, str]] = []  # the enclosing networks: (end, region), innermost last
    cursor = 0  # the first address not yet given a region (or passed over)
    for start, negative_end, _line, region in sorted(networks):
        while open_ and open_[-1][0] < start:
            end, outer = open_.pop()
            emit(cursor, end, outer)
            cursor = end + 1
        if open_:
            emit(cursor, start - 1, open_[-1][1])
        cursor = start
        open_.append((-negative_end, region))
    while open_:
        end, outer = open_.pop()
        emit(cursor, end, outer)
        cursor = end + 1
    return table


@functools.lru_cache(maxsize=4)
def load(path: str | None = None) -> RegionDatabase:
    """The database at ``path`` (None: the bundled test/demo one), read once per process."""
    if path is None:
        text = resources.files(__package__).joinpath("data", BUNDLED).read_text("utf-8")
        return parse(text.splitlines(), source=BUNDLED)
    text = Path(path).read_text(encoding="utf-8-sig")
    return parse(text.splitlines(), source=path)


def region_of(ip: str, path: str | None = None) -> str | None:
    """The ISO 3166 region (``CN-44``) or country (``US``) of ``ip`` in the database at
    ``path`` (the ``risk_ip_db`` setting; None: the bundled test/demo database). None when
    the address is in no network of it, or is not an IP address."""
    return load(path).region_of(ip)
