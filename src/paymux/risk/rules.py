"""Risk rules in CEL: validated once when saved, then evaluated fast and never raising.

A rule is one CEL expression over the attributes of one event type
(:mod:`paymux.risk.attributes`) that yields a bool: ``amount > 500000 && customer.is_new``,
``ip_region in list("blocked_regions")``, ``cidr_match(ip, list("office_nets"))``. CEL is
evaluated by the ``common-expression-language`` package (the Rust ``cel`` crate) — never by
Python's ``eval``.

:func:`compile_rule` refuses, with a :class:`RuleInvalid` carrying a machine-readable code and
the offset in the expression, anything a risk team should hear about at save time rather than
on live traffic: a syntax error, an unknown attribute or function, a type error, a non-bool
result, an expression too long or too deeply nested. The package exposes no AST and no type
checker (0.10: ``Program.references()`` names only the root identifiers and the functions),
so this module lexes the expression itself to find every attribute path, function and list
name, and type-checks by running the expression on sample inputs built from the attributes'
examples (plus a static check of ``==``/``!=`` against literals, which CEL answers with false
rather than an error) — a type error on a branch no sample reaches is found only at run time,
where it is an ``error`` outcome like any other. Errors found by running carry no position:
the package reports none for run-time errors.

:func:`evaluate` and :func:`evaluate_all` never raise: a missing value, a division by zero or a
type error on real data is an ``error`` outcome with the error's text, for the caller's
``on_error`` policy.

Speed: the package converts every variable of a plain dict activation on each run, and every
list a function returns, so activations go through a lazy resolver (a rule converts only the
attributes it reads) and the common list forms — ``<attribute> in list("n")`` and
``cidr_match(<attribute>, list("n"))`` — are rewritten at compile time into calls that test
membership in the caller's Python set without converting the list.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import ipaddress
import re
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any

from paymux.kit.errors import InvalidRequest
from paymux.risk.attributes import (
    ATTRIBUTES,
    GROUPS,
    Attribute,
    CelType,
    EventType,
    attributes_for,
)


def _native_cel() -> ModuleType:
    """The package's Rust extension (``cel.cel``) without the package's ``__init__``.

    ``import cel`` also imports its command-line tool (typer, rich, prompt_toolkit, pygments:
    ~0.2 s and their memory), which an API process must not carry (tests/test_lean_imports.py).
    The extension is loaded from the package's directory and registered as ``cel.cel``, so a
    later ``import cel`` (tests, the ``cel`` tool) reuses it — PyO3 cannot initialise it twice.
    One wart: that later package has no ``cel.cel`` attribute (its names still work).
    """
    if "cel.cel" in sys.modules:
        return sys.modules["cel.cel"]
    package = importlib.util.find_spec("cel")  # finds the package without running it
    if package is None or not package.submodule_search_locations:
        raise ImportError("the common-expression-language package is not installed")
    finder = importlib.machinery.FileFinder(
        package.submodule_search_locations[0],
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
    )
    spec = finder.find_spec("cel.cel")
    if spec is None or spec.loader is None:
        raise ImportError("the common-expression-language package has no cel.cel extension")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cel.cel"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["cel.cel"]
        raise
    return module


if TYPE_CHECKING:
    from cel import cel as _cel
else:
    _cel = _native_cel()

MAX_LENGTH = 2000
"""The longest expression accepted, in characters."""

MAX_DEPTH = 16
"""The deepest nesting of parentheses, brackets and braces accepted."""

LIST_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""What a risk list's name looks like inside ``list("…")``."""


class RuleErrorCode(StrEnum):
    """Why a rule was refused when saved."""

    rule_syntax = "rule_syntax"
    """The expression does not parse, or uses a construct this engine does not support."""
    rule_unknown_attribute = "rule_unknown_attribute"
    """It reads a name that is not an attribute of the rule's event type."""
    rule_unknown_function = "rule_unknown_function"
    """It calls a function that is neither CEL's standard one nor ``list``/``cidr_match``."""
    rule_type = "rule_type"
    """An operation on the attributes' types is not defined (``amount + "x"``)."""
    rule_not_boolean = "rule_not_boolean"
    """The expression yields something other than a bool."""
    rule_too_long = "rule_too_long"
    """The expression is longer than :data:`MAX_LENGTH` or nested deeper than :data:`MAX_DEPTH`."""


class RuleInvalid(InvalidRequest):
    """A rule refused when saved; ``position`` is the 0-based offset in the expression where
    the problem is, when known. Rendered like every API error (400, ``param="expression"``)."""

    def __init__(self, code: RuleErrorCode, message: str, position: int | None = None) -> None:
        super().__init__(code.value, message, param="expression")
        self.position = position


class RuleResult(StrEnum):
    """What one rule said about one event."""

    hit = "hit"
    """The expression was true."""
    no_hit = "no_hit"
    """The expression was false."""
    error = "error"
    """The expression could not be evaluated on this event's data."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One rule's result on one event; ``error`` is the error's text when ``result`` is error."""

    result: RuleResult
    error: str | None = None


# -- functions ---------------------------------------------------------------------------------

_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
"""Comprehension macros: their first argument binds a variable, it is not an attribute."""

_GLOBAL_FUNCTIONS = frozenset(
    {"size", "int", "uint", "double", "string", "bytes", "type", "dyn", "has", "matches"}
    | {"timestamp", "duration", "list", "cidr_match"}
)
"""Functions a rule may call as ``f(x)``: CEL's standard ones and the two risk functions."""

_METHODS = _MACROS | frozenset(
    {"size", "contains", "startsWith", "endsWith", "matches"}
    | {"getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear", "getHours"}
    | {"getMilliseconds", "getMinutes", "getMonth", "getSeconds"}
)
"""Functions a rule may call as ``x.f(…)``."""

_TYPE_NAMES = frozenset(
    {"int", "uint", "double", "string", "bool", "bytes", "list", "map", "null_type", "type"}
)
"""Identifiers that name a type (``type(x) == int``), not an attribute."""

_OPERATOR = re.compile(r"_[^A-Za-z0-9_]+_|_\[_\]|_\?_:_|!_|-_|@[a-z_]+")
"""How ``Program.functions()`` spells CEL's operators (``_+_``, ``@in``, ``!_``)."""

_IN_LIST = "__paymux_in_list"
_CIDR_IN_LIST = "__paymux_cidr_in_list"


@lru_cache(maxsize=256)
def _network_index(items: frozenset[str]) -> Mapping[int, tuple[tuple[int, frozenset[int]], ...]]:
    """A CIDR list as, per IP version, one set of network prefixes per prefix length, so a
    match costs one set lookup per distinct length instead of one test per network. Cached:
    a list's frozenset is reused across evaluations (its hash is kept, lookups hit by
    identity)."""
    by_version: dict[int, dict[int, set[int]]] = {4: {}, 6: {}}
    for item in items:
        net = ipaddress.ip_network(item, strict=False)
        shift = net.max_prefixlen - net.prefixlen
        by_version[net.version].setdefault(shift, set()).add(int(net.network_address) >> shift)
    return {
        version: tuple((shift, frozenset(prefixes)) for shift, prefixes in sorted(d.items()))
        for version, d in by_version.items()
    }


def _cidr_match(ip: str, cidrs: Collection[str]) -> bool:
    """Whether ``ip`` is inside any of ``cidrs`` (``"10.0.0.0/8"``; a bare address is a /32).
    An IPv4-mapped IPv6 address (``::ffff:10.0.0.1``) is matched as IPv6 only."""
    if not isinstance(ip, str):  # ip_address() would take an int as an address
        raise TypeError(f"cidr_match() takes an IP address string, not {type(ip).__name__}")
    address = ipaddress.ip_address(ip)
    index = _network_index(cidrs if isinstance(cidrs, frozenset) else frozenset(cidrs))
    value = int(address)
    return any(value >> shift in prefixes for shift, prefixes in index[address.version])


def _functions(lists: Mapping[str, Collection[str]]) -> dict[str, Callable[..., Any]]:
    def list_(name: str) -> list[str]:
        try:
            return list(lists[name])
        except KeyError:
            raise LookupError(f"unknown list {name!r}") from None

    def in_list(value: Any, name: str) -> bool:
        try:
            items = lists[name]
        except KeyError:
            raise LookupError(f"unknown list {name!r}") from None
        # List items are strings: anything else is in no list (as in CEL, where a value of
        # another type never equals a string), and never hashed against it.
        return isinstance(value, str) and value in items

    def cidr_in_list(ip: str, name: str) -> bool:
        try:
            items = lists[name]
        except KeyError:
            raise LookupError(f"unknown list {name!r}") from None
        return _cidr_match(ip, items)

    return {
        "list": list_,
        "cidr_match": _cidr_match,
        _IN_LIST: in_list,
        _CIDR_IN_LIST: cidr_in_list,
    }


# -- lexing ------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<str>
        [bB]?[rR][bB]?(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"[^"\n]*"|'[^'\n]*')
      | [bB]?(?:\"\"\"(?:\\[\s\S]|[^\\])*?\"\"\"|'''(?:\\[\s\S]|[^\\])*?'''
             |"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
    )
  | (?P<num>0[xX][0-9a-fA-F]+[uU]?|\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+
        |\.\d+(?:[eE][+-]?\d+)?|\d+[uU]?)
  | (?P<ident>[_A-Za-z][_A-Za-z0-9]*)
  | (?P<op>&&|\|\||==|!=|<=|>=|[!<>+\-*/%?:.,\[\]{}()])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # str, num, ident, op
    text: str
    pos: int

    @property
    def ends_value(self) -> bool:
        """Whether a ``.`` after this token selects a member of a value."""
        if self.kind == "ident":
            return self.text != "in"
        return self.kind in ("str", "num") or self.text in (")", "]", "}")


def _lex(expression: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(expression):
        m = _TOKEN.match(expression, pos)
        if m is None:
            raise RuleInvalid(
                RuleErrorCode.rule_syntax, f"unexpected character {expression[pos]!r}", pos
            )
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    return tokens


def _plain_string(tok: _Tok) -> str | None:
    """The value of a plain quoted string literal without escapes, else None."""
    text = tok.text
    if tok.kind != "str" or text[0] not in "\"'" or "\\" in text or text.startswith(text[0] * 3):
        return None
    return text[1:-1]


# -- compiling ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A validated rule ready to run: what it reads, which lists it uses, and its program.

    ``attributes`` are full attribute names (``customer.is_new``), ``lists`` the names passed
    to ``list("…")``; the engine computes only the families of the attributes and loads only
    these lists.
    """

    expression: str
    event: EventType
    attributes: frozenset[str]
    lists: frozenset[str]
    program: _cel.Program = field(repr=False, compare=False)
    groups: frozenset[str] = frozenset()
    """The groups (``customer``) among ``attributes``: built as map variables for this rule."""


_PARSE_POSITION = re.compile(r"<input>:(\d+):(\d+):")
_UNDEFINED = re.compile(r"Undefined variable or function: '([^']*)'")
"""How the package reports a name with no value (its error texts are all it offers)."""


def _parse(expression: str) -> _cel.Program:
    try:
        return _cel.compile(expression)
    except Exception as exc:
        message = str(exc).removeprefix(f"Failed to parse expression {expression!r}: ")
        position = None
        m = _PARSE_POSITION.search(message)
        if m:
            line, column = int(m.group(1)), int(m.group(2))
            lines = expression.split("\n")
            position = sum(len(x) + 1 for x in lines[: line - 1]) + column - 1
        raise RuleInvalid(RuleErrorCode.rule_syntax, message.strip(), position) from None


class _Scan:
    """One pass over the tokens: collects attribute paths and list names, checks functions,
    and rewrites the list forms into their fast calls."""

    def __init__(self, expression: str, tokens: list[_Tok], attrs: Mapping[str, Attribute]) -> None:
        self.expression = expression
        self.toks = tokens
        self.attrs = attrs
        self.roots = {name.split(".", 1)[0] for name in attrs}
        self.read: set[str] = set()
        self.lists: set[str] = set()
        self.rewrites: list[tuple[int, int, str]] = []  # (start, end, replacement)
        self.bound = self._bound_names()

    def tok(self, i: int) -> _Tok | None:
        return self.toks[i] if 0 <= i < len(self.toks) else None

    def is_op(self, i: int, *texts: str) -> bool:
        t = self.tok(i)
        return t is not None and t.kind == "op" and t.text in texts

    def _bound_names(self) -> set[str]:
        """Names bound by comprehension macros (the ``x`` of ``.exists(x, …)``)."""
        bound: set[str] = set()
        for i, t in enumerate(self.toks):
            if (
                t.kind == "ident"
                and t.text in _MACROS
                and self.is_op(i - 1, ".")
                and (self.is_op(i + 1, "(") and self.is_op(i + 3, ","))
            ):
                var = self.toks[i + 2]
                if var.kind == "ident":
                    if var.text in self.roots or var.text in GROUPS:
                        raise RuleInvalid(
                            RuleErrorCode.rule_syntax,
                            f"the variable {var.text!r} hides the attribute of that name",
                            var.pos,
                        )
                    bound.add(var.text)
        return bound

    def run(self) -> None:
        i = 0
        while i < len(self.toks):
            t = self.toks[i]
            prev = self.tok(i - 1)
            if t.kind == "op" and t.text == ".":
                if prev is None or not prev.ends_value:
                    raise RuleInvalid(
                        RuleErrorCode.rule_syntax, "a name cannot start with '.'", t.pos
                    )
                nxt = self.tok(i + 1)
                if nxt is not None and nxt.kind == "ident" and self.is_op(i + 2, "("):
                    self._check_method(nxt)
                i += 2  # a member of a computed value (a literal, a call's result)
                continue
            if t.kind == "ident" and t.text not in ("true", "false", "null", "in"):
                i = self._path(i)
                continue
            i += 1

    def _path(self, i: int) -> int:
        """Handle the dotted path starting at root identifier ``i``; returns the next index."""
        parts, j = [self.toks[i]], i
        while self.is_op(j + 1, ".") and (n := self.tok(j + 2)) is not None and n.kind == "ident":
            parts.append(n)
            j += 2
        call = self.is_op(j + 1, "(")
        root = parts[0].text
        names = [p.text for p in parts]
        if call:
            receiver = names[:-1]
            if not receiver:
                self._check_function(parts[0], i)
                return j + 1
            if root in self.roots or root in GROUPS or root in self.bound:
                self._attribute(receiver, parts[0].pos)
                self._check_method(parts[-1])
                return j + 1
            raise RuleInvalid(
                RuleErrorCode.rule_unknown_function,
                f"unknown function {'.'.join(names)!r}",
                parts[0].pos,
            )
        if len(names) == 1 and root in _TYPE_NAMES:
            return j + 1
        attr = self._attribute(names, parts[0].pos)
        if attr is not None:
            self._check_equality(i, j, attr)
        self._maybe_rewrite_in(i, j)
        return j + 1

    def _attribute(self, names: list[str], pos: int) -> Attribute | None:
        """Record the attribute ``names`` reads (None for a comprehension variable's path)."""
        if names[0] in self.bound:
            return None
        for n in range(len(names), 0, -1):
            name = ".".join(names[:n])
            if name in self.attrs:
                if n < len(names):
                    raise RuleInvalid(
                        RuleErrorCode.rule_unknown_attribute,
                        f"{name!r} ({self.attrs[name].type.value}) has no field {names[n]!r}",
                        pos,
                    )
                self.read.add(name)
                return self.attrs[name]
        full = ".".join(names)
        if names[0] in GROUPS and len(names) == 1:
            fields = sorted(a for a in self.attrs if a.startswith(names[0] + "."))
            raise RuleInvalid(
                RuleErrorCode.rule_unknown_attribute,
                f"{full!r} is a group: read one of its fields ({', '.join(fields)})",
                pos,
            )
        raise RuleInvalid(RuleErrorCode.rule_unknown_attribute, f"unknown attribute {full!r}", pos)

    def _check_equality(self, start: int, end: int, attr: Attribute) -> None:
        """``amount == "500"`` is silently false in CEL (no overload error for ``==``): refuse
        an attribute compared for equality with a literal of another type, when the two are
        the whole operands (nothing binding tighter on either side)."""
        if self.is_op(end + 1, "==", "!=") and self._bounded(start - 1, end + 3):
            literal = self.tok(end + 2)
        elif self.is_op(start - 1, "==", "!=") and self._bounded(start - 3, end + 1):
            literal = self.tok(start - 2)
        else:
            return
        kind = _literal_type(literal) if literal is not None else None
        if kind is None or kind in _COMPATIBLE[attr.type]:
            return
        assert literal is not None
        raise RuleInvalid(
            RuleErrorCode.rule_type,
            f"{attr.name!r} ({attr.type.value}) is compared with a {kind} literal: "
            "the two are never equal",
            literal.pos,
        )

    def _bounded(self, before: int, after: int) -> bool:
        """Whether tokens ``before`` and ``after`` bind looser than a relation (or are absent)."""
        return (self.tok(before) is None or self.is_op(before, *_LOOSER_BEFORE)) and (
            self.tok(after) is None or self.is_op(after, *_LOOSER_AFTER)
        )

    def _check_method(self, name: _Tok) -> None:
        if name.text not in _METHODS:
            raise RuleInvalid(
                RuleErrorCode.rule_unknown_function, f"unknown function {name.text!r}", name.pos
            )

    def _check_function(self, name: _Tok, i: int) -> None:
        if name.text not in _GLOBAL_FUNCTIONS:
            raise RuleInvalid(
                RuleErrorCode.rule_unknown_function, f"unknown function {name.text!r}", name.pos
            )
        if name.text == "list":
            self.lists.add(self._list_name(i))
        elif name.text == "cidr_match":
            self._maybe_rewrite_cidr(i)

    def _list_name(self, i: int) -> str:
        """The name in ``list("name")`` at token ``i``: always one plain string literal, so the
        lists a rule uses are known when it is saved."""
        arg = self.tok(i + 2)
        value = _plain_string(arg) if arg is not None and self.is_op(i + 3, ")") else None
        if value is None or not LIST_NAME.fullmatch(value):
            raise RuleInvalid(
                RuleErrorCode.rule_syntax,
                'list() takes one quoted list name, e.g. list("blocked_regions")',
                self.toks[i].pos,
            )
        return value

    def _simple_path_end(self, i: int) -> int | None:
        """The index of the last token of the attribute path starting at ``i``, if it is one."""
        t = self.tok(i)
        if t is None or t.kind != "ident" or t.text in self.bound:
            return None
        j = i
        while self.is_op(j + 1, ".") and (n := self.tok(j + 2)) is not None and n.kind == "ident":
            j += 2
        name = "".join(x.text for x in self.toks[i : j + 1])
        return j if name in self.attrs else None

    def _require_string(self, start: int, end: int, why: str) -> None:
        """The attribute path ``start..end`` (whole operand) must be a string attribute."""
        name = "".join(t.text for t in self.toks[start : end + 1])
        attr = self.attrs.get(name)
        if attr is not None and attr.type is not CelType.string:
            raise RuleInvalid(
                RuleErrorCode.rule_type,
                f"{name!r} is {attr.type.value}; {why}",
                self.toks[start].pos,
            )

    def _maybe_rewrite_in(self, start: int, end: int) -> None:
        """``<path> in list("n")`` → a set lookup, when nothing binds tighter on either side:
        ``in`` shares its precedence with the relations and associates left, so the path
        must follow an operator of lower precedence and the call must precede one."""
        if (self.tok(end + 1) or _NONE).text != "in":
            return
        if (self.tok(end + 2) or _NONE).text != "list" or not self.is_op(end + 3, "("):
            return
        if not self._bounded(start - 1, end + 6):
            return
        self._require_string(start, end, "risk lists hold strings")
        name = self._list_name(end + 2)
        path = self.expression[self.toks[start].pos : self.toks[end].pos + len(self.toks[end].text)]
        close = self.toks[end + 5]
        self.rewrites.append((self.toks[start].pos, close.pos + 1, f'{_IN_LIST}({path}, "{name}")'))

    def _maybe_rewrite_cidr(self, i: int) -> None:
        """``cidr_match(<path>, list("n"))`` → a lookup of the parsed networks of list n."""
        if not self.is_op(i + 1, "("):
            return
        end = self._simple_path_end(i + 2)
        if end is None or not self.is_op(end + 1, ","):
            return
        self._require_string(i + 2, end, "cidr_match() takes an IP address string")
        if (self.tok(end + 2) or _NONE).text != "list" or not self.is_op(end + 3, "("):
            return
        if not self.is_op(end + 5, ")") or not self.is_op(end + 6, ")"):
            return
        name = self._list_name(end + 2)
        path = self.expression[self.toks[i + 2].pos : self.toks[end].pos + len(self.toks[end].text)]
        self.rewrites.append(
            (self.toks[i].pos, self.toks[end + 6].pos + 1, f'{_CIDR_IN_LIST}({path}, "{name}")')
        )

    def executable(self) -> str:
        out: list[str] = []
        last = 0
        for start, end, text in sorted(self.rewrites):
            if start < last:  # nested forms: the outer rewrite already covers it
                continue
            out.append(self.expression[last:start])
            out.append(text)
            last = end
        out.append(self.expression[last:])
        return "".join(out)


_NONE = _Tok("op", "", -1)

_LOOSER_BEFORE = ("(", ",", "&&", "||", "?", ":", "[", "{")
"""Tokens after which an operand of a relation starts (``a && x == 1``: ``x`` is one)."""
_LOOSER_AFTER = (")", ",", "&&", "||", "?", ":", "]", "}", "==", "!=", "<", "<=", ">", ">=")
"""Tokens before which an operand of a relation ends; relations associate left, so another
relation after it applies to the whole, not to this operand."""

_COMPATIBLE: Mapping[CelType, frozenset[str]] = {
    CelType.int: frozenset({"int", "uint", "double"}),
    CelType.double: frozenset({"int", "uint", "double"}),
    CelType.string: frozenset({"string"}),
    CelType.bool: frozenset({"bool"}),
}
"""The literal types an attribute of each type can equal (CEL compares numbers across types)."""


def _literal_type(tok: _Tok) -> str | None:
    """The CEL type of a literal token, None when the token is not a literal."""
    if tok.kind == "str":  # b"…", rb'…': a b among the letters before the quote
        prefix = tok.text[: len(tok.text) - len(tok.text.lstrip("bBrR"))]
        return "bytes" if "b" in prefix.lower() else "string"
    if tok.kind == "num":
        text = tok.text.lower()
        if text.endswith("u"):
            return "uint"
        if not text.startswith("0x") and ("." in text or "e" in text):
            return "double"
        return "int"
    if tok.kind == "ident":
        return {"true": "bool", "false": "bool", "null": "null"}.get(tok.text)
    return None


def _check_depth(tokens: list[_Tok]) -> None:
    depth = 0
    for t in tokens:
        if t.kind == "op" and t.text in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                raise RuleInvalid(
                    RuleErrorCode.rule_too_long,
                    f"the expression is nested deeper than {MAX_DEPTH} levels",
                    t.pos,
                )
        elif t.kind == "op" and t.text in ")]}":
            depth -= 1


def _samples(attrs: Mapping[str, Attribute]) -> list[dict[str, Any]]:
    """Sample activations: every attribute's example, then with the bools all false, then in
    two alternating patterns, so both sides of ``&&``/``||``/``?:`` on a bool are reached."""
    bools = [a.name for a in attrs.values() if a.type is CelType.bool]
    base = {a.name: a.example for a in attrs.values()}
    variants = [base]
    for pattern in (lambda k: False, lambda k: k % 2 == 0, lambda k: k % 2 == 1):
        variants.append(base | {name: pattern(k) for k, name in enumerate(bools)})
    return variants


ALIASES: Mapping[str, str] = MappingProxyType({"ip.region": "ip_region"})
"""Dotted spellings of flat attributes (``ip.region in list("blocked_regions")``): the dot
is read as the underscore. ``ip`` itself stays a string attribute."""
assert all(len(k) == len(v) for k, v in ALIASES.items()), "an alias keeps the length"


def _spelled(expression: str, tokens: list[_Tok]) -> tuple[str, list[_Tok]]:
    """The expression with every alias spelled as its attribute (same length, so positions in
    error messages still point into what the user wrote) and its tokens."""
    text = list(expression)
    changed = False
    for i in range(len(tokens) - 2):
        a, dot, b = tokens[i], tokens[i + 1], tokens[i + 2]
        after_dot = i > 0 and tokens[i - 1].kind == "op" and tokens[i - 1].text == "."
        if (a.kind == "ident" and dot.text == "." and b.kind == "ident" and not after_dot
                and f"{a.text}.{b.text}" in ALIASES and dot.pos == a.pos + len(a.text)
                and b.pos == dot.pos + 1):  # fmt: skip
            alias = ALIASES[f"{a.text}.{b.text}"]
            text[a.pos : b.pos + len(b.text)] = alias
            changed = True
    if not changed:
        return expression, tokens
    spelled = "".join(text)
    return spelled, _lex(spelled)


def compile_rule(expression: str, event: EventType | str) -> CompiledRule:
    """Validate ``expression`` as a rule of ``event`` and compile it; raises :class:`RuleInvalid`.

    Checks, in order: length, syntax (the package's parser), nesting depth, that every name is
    an attribute of the event and every function is allowed, that ``list()`` names a list
    literally, and — by running it on sample inputs — that its operations are defined on the
    attributes' types and that it yields a bool.
    """
    event = EventType(event)
    if len(expression) > MAX_LENGTH:
        raise RuleInvalid(
            RuleErrorCode.rule_too_long,
            f"the expression is {len(expression)} characters long; the limit is {MAX_LENGTH}",
            MAX_LENGTH,
        )
    if not expression.strip():
        raise RuleInvalid(RuleErrorCode.rule_syntax, "the expression is empty", 0)
    source, tokens = _spelled(expression, _lex(expression))
    _check_depth(tokens)
    checked = _parse(source)
    attrs = attributes_for(event)
    scan = _Scan(source, tokens, attrs)
    scan.run()
    # Belt and braces: every function the package's own parser saw must be allowed too.
    for name in checked.functions():
        if not _OPERATOR.fullmatch(name) and name not in _GLOBAL_FUNCTIONS | _METHODS:
            raise RuleInvalid(RuleErrorCode.rule_unknown_function, f"unknown function {name!r}")
    for name in checked.variables():
        if name not in scan.roots | GROUPS | scan.bound | _TYPE_NAMES:
            raise RuleInvalid(RuleErrorCode.rule_unknown_attribute, f"unknown attribute {name!r}")
    executable = scan.executable()
    program = checked if executable == source else _parse(executable)
    rule = CompiledRule(
        expression=expression,
        event=event,
        attributes=frozenset(scan.read),
        lists=frozenset(scan.lists),
        program=program,
        groups=frozenset(name.split(".", 1)[0] for name in scan.read if "." in name),
    )
    _try_samples(rule, attrs)
    return rule


def _try_samples(rule: CompiledRule, attrs: Mapping[str, Attribute]) -> None:
    """Run the rule on each sample input; a type error or a non-bool result refuses it.

    Other errors (a division by zero, an overflow) depend on the values and are left to run
    time, where they are ``error`` outcomes: the samples are synthetic.
    """
    lists = {name: frozenset[str]() for name in rule.lists}
    for sample in _samples(attrs):
        try:
            value = rule.program.execute(_context(sample, lists, rule.groups))
        except TypeError as exc:
            raise RuleInvalid(RuleErrorCode.rule_type, str(exc)) from None
        except RuntimeError as exc:
            # Every attribute has a sample value, so an undefined name is one the scan let
            # through: a comprehension variable used outside its comprehension.
            if m := _UNDEFINED.search(str(exc)):
                raise RuleInvalid(
                    RuleErrorCode.rule_unknown_attribute, f"unknown attribute {m.group(1)!r}"
                ) from None
            continue
        except Exception:  # noqa: S112 - value-dependent errors are run-time outcomes
            continue
        if not isinstance(value, bool):
            raise RuleInvalid(
                RuleErrorCode.rule_not_boolean,
                f"the expression yields {type(value).__name__} ({value!r}), a rule needs a bool",
            )


# -- evaluating --------------------------------------------------------------------------------


_GROUP_FIELDS: Mapping[str, tuple[str, ...]] = {
    group: tuple(
        sorted(
            {
                name.split(".", 1)[1]
                for attrs in ATTRIBUTES.values()
                for name in attrs
                if name.startswith(group + ".")
            }
        )
    )
    for group in GROUPS
}
"""Every field of every group, over all event types."""


def _context(
    activation: Mapping[str, Any],
    lists: Mapping[str, Collection[str]],
    groups: Collection[str] = GROUPS,
) -> _cel.Context:
    """A context for ``activation`` (flat names: ``amount``, ``customer.is_new``).

    Flat attributes resolve lazily, so a rule converts only what it reads (the package would
    convert every variable of a dict on every run). A group (``customer``) is a map variable
    built once per context, and only for ``groups`` — those some rule reads: a map returned by
    the resolver is converted again on every read, ~1.5 µs a field. A missing attribute
    resolves to nothing, which the package reports as an undefined variable (a missing group
    field as a missing key): an ``error`` outcome.
    """
    context = _cel.Context(functions=_functions(lists))
    for group in groups:
        values = {}
        for name in _GROUP_FIELDS[group]:
            value = activation.get(f"{group}.{name}")
            if value is not None:
                values[name] = value
        context.add_variable(group, values)

    def resolve(name: str) -> Any:
        return None if name in GROUPS else activation.get(name)

    context.set_variable_resolver(resolve)
    return context


def _run(rule: CompiledRule, context: _cel.Context) -> Outcome:
    try:
        value = rule.program.execute(context)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3's PanicException derives from BaseException
        if isinstance(exc, KeyError):
            return Outcome(RuleResult.error, f"missing attribute value: field {exc.args[0]!r}")
        if m := _UNDEFINED.search(str(exc)):
            return Outcome(RuleResult.error, f"missing attribute value: {m.group(1)!r}")
        return Outcome(RuleResult.error, f"{type(exc).__name__}: {exc}")
    if value is True:
        return Outcome(RuleResult.hit)
    if value is False:
        return Outcome(RuleResult.no_hit)
    return Outcome(RuleResult.error, f"the rule yielded {type(value).__name__}, not a bool")


def evaluate(
    rule: CompiledRule,
    activation: Mapping[str, Any],
    lists: Mapping[str, Collection[str]],
) -> Outcome:
    """Run one rule on one event's attribute values; never raises.

    ``activation`` maps flat attribute names (``amount``, ``customer.is_new``) to values;
    ``lists`` maps list names to their items — pass frozensets: membership is then O(1) and
    CIDR lists are parsed once per set.
    """
    try:
        context = _context(activation, lists, rule.groups)
    except Exception as exc:
        return Outcome(RuleResult.error, f"{type(exc).__name__}: {exc}")
    return _run(rule, context)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Every rule's outcome (in the order of the rules) and the time taken, in seconds."""

    outcomes: tuple[Outcome, ...]
    elapsed: float

    def results(self, rules: Sequence[CompiledRule]) -> list[tuple[CompiledRule, Outcome]]:
        """The rules paired with their outcomes."""
        return list(zip(rules, self.outcomes, strict=True))


def evaluate_all(
    rules: Sequence[CompiledRule],
    activation: Mapping[str, Any],
    lists: Mapping[str, Collection[str]],
) -> Evaluation:
    """Run every rule on one event's attribute values with one shared context; never raises."""
    started = time.perf_counter()
    try:
        context = _context(activation, lists, {g for rule in rules for g in rule.groups})
    except Exception as exc:
        failed = Outcome(RuleResult.error, f"{type(exc).__name__}: {exc}")
        return Evaluation(tuple(failed for _ in rules), time.perf_counter() - started)
    outcomes = tuple(_run(rule, context) for rule in rules)
    return Evaluation(outcomes, time.perf_counter() - started)
