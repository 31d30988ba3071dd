"""A day's API listing written down as a bill: JSON Lines (UTF-8, one JSON object per line, so
it reads line by line in bounded memory — a JSON document cannot be parsed as a stream with the
standard library), for channels that publish no bill file but list their transactions page by
page (Stripe balance transactions, PayPal Transaction Search).

The file:

1. a header ``{"object": "paymux.<channel>_bill", ...}`` (what else it says is the channel's);
2. one line per page, the API's answer exactly as received except that any line break between
   JSON tokens is turned into a space (a JSON string never holds a raw line break, so nothing
   else changes);
3. a trailer ``{"object": "end", "pages": N, "count": M}`` written once the last page was read:
   M is the number of rows in the pages.

:class:`ListingBillReader` reads such a file; a channel says only what is its own (the header's
object, how a page holds its rows, how a row becomes a statement line, what of each page it
keeps and its own completeness checks). The checks every listing has: ``end_line`` (the trailer
exists: the listing was written to its end), ``page_count`` and ``row_count`` (the trailer
against what was read) and ``fetched_count`` when the fetch reported its count
(``expected["count"]``).

Nothing here knows a channel.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from typing import IO, Any, ClassVar

from paymux.channels.base import StatementLine
from paymux.channels.bills import BillReader

END_OBJECT = "end"


# ---------------------------------------------------------------- writing
def json_line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def page_line(raw: bytes) -> bytes:
    """An API answer on one line, byte for byte but for line breaks between tokens."""
    return raw.replace(b"\r", b" ").replace(b"\n", b" ").strip() + b"\n"


def trailer(pages: int, count: int) -> bytes:
    return json_line({"object": END_OBJECT, "pages": pages, "count": count})


def write_listing(into: IO[bytes], head: bytes, pages: list[bytes], rows_key: str) -> None:
    """A whole bill from pages already in hand (sandboxes and tests): ``head`` is the header
    line, ``rows_key`` the field of a page that holds its rows."""
    into.write(head)
    count = 0
    for raw in pages:
        into.write(page_line(raw))
        count += len(json.loads(raw).get(rows_key) or [])
    into.write(trailer(len(pages), count))


# ---------------------------------------------------------------- reading
def integer(value: Any) -> int | None:
    """``value`` when it is a JSON integer (not a boolean)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _lines(handle: IO[bytes], max_line: int) -> Iterator[tuple[bytes, bool]]:
    """The file's lines, each cut at ``max_line`` bytes (True: the line was longer; the rest of
    it is skipped without being kept)."""
    while True:
        line = handle.readline(max_line)
        if not line:
            return
        if len(line) == max_line and not line.endswith(b"\n"):
            while True:
                rest = handle.readline(max_line)
                if not rest or rest.endswith(b"\n"):
                    break
            yield line, True
            continue
        yield line, False


def _object(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _text(line: bytes) -> str:
    return line.decode("utf-8", "replace").rstrip("\r\n")


class ListingBillReader(BillReader):
    """Reads a listing bill one page (line) at a time; a channel's subclass fills in the
    hooks."""

    bill_object: ClassVar[str]
    """The header's ``object`` (``paymux.<channel>_bill``)."""
    not_a_bill: ClassVar[str]
    """The problem of a file whose first line is not that header."""
    max_line: ClassVar[int]
    """A longer line is refused without being held whole."""
    remembered: ClassVar[tuple[str, ...]] = ()
    """The fields of each page kept for :meth:`check_complete` and :meth:`check_last_page`:
    what the last page said."""

    @abstractmethod
    def page_rows(self, page: Mapping[str, Any]) -> list[Any] | None:
        """The rows of a page, or None when the line is not a page of the listing."""

    @abstractmethod
    def statement_line(self, row: Any) -> StatementLine:
        """One row → a statement line; ValueError says why it cannot be read."""

    @abstractmethod
    def check_complete(self, last: Mapping[str, Any]) -> None:
        """The channel's ``listing_complete`` check, from what the last page said (empty when
        there was no page)."""

    def check_last_page(self, last: Mapping[str, Any], count: int) -> None:
        """The channel's own further checks once the counts are checked (none by default)."""

    def read(self) -> Iterator[StatementLine]:
        with self.path.open("rb") as handle:
            lines = _lines(handle, self.max_line)
            first, _ = next(lines, (b"", False))
            head = _object(first)
            if head is None or head.get("object") != self.bill_object:
                self.problem(0, _text(first[:1000]), self.not_a_bill)
                return
            pages = count = 0
            end: dict[str, Any] | None = None
            last: dict[str, Any] = {}
            for number, (line, too_long) in enumerate(lines, start=2):
                page = None if too_long else _object(line)
                if end is not None:
                    self.problem(number, _text(line[:1000]), "line after the end line")
                    continue
                if page is None:
                    self.problem(number, _text(line[:1000]), "line is not a JSON object")
                    continue
                if page.get("object") == END_OBJECT:
                    end = page
                    continue
                rows = self.page_rows(page)
                if rows is None:
                    self.problem(number, _text(line[:1000]), "not a page of the listing")
                    continue
                pages += 1
                last = {key: page.get(key) for key in self.remembered}
                for row in rows:
                    count += 1
                    try:
                        yield self.statement_line(row)
                    except ValueError as exc:
                        self.problem(number, json.dumps(row, ensure_ascii=False), str(exc))
        self._checks(end, pages, count, last)

    def _checks(self, end: dict[str, Any] | None, pages: int, count: int,
                last: dict[str, Any]) -> None:  # fmt: skip
        self.check("end_line", end is not None, "" if end else "the listing was not written "
                   "to its end (no end line)")  # fmt: skip
        self.check_complete(last)
        for name, key, found in (("page_count", "pages", pages), ("row_count", "count", count)):
            total = integer(end.get(key)) if end else None
            if total is None:
                self.check(name, False, f"no {key} in an end line")
            else:
                self.check_totals(name, total, found, key)
        self.check_last_page(last, count)
        if "count" in self.expected:
            expected = self.expected["count"]
            ok = expected.isdigit() and int(expected) == count
            self.check("fetched_count", ok, "" if ok else f"fetched {expected}, file {count}")
