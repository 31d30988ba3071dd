"""The shell examples in docs/*.md run, as written, against a real ``paymux demo``.

Conventions (also stated in docs/quickstart.md, "About the examples"):

- Every fenced ```sh or ```bash block in docs/*.md is run, unless the line before its fence (blank
  lines aside) is ``<!-- not-run: <reason> -->`` — for commands that start servers, need real
  channel credentials or are synopses with placeholders.
- A block runs with ``bash -euo pipefail`` in the demo's directory, with what the quickstart
  tells a reader to export: ``PAYMUX_URL`` (the demo's base URL), ``PAYMUX_KEY`` (its test API
  key), ``PAYMUX_ENV=demo`` and ``PAYMUX_DATABASE_URL`` (so the ``paymux`` CLI works on the demo's
  database), plus every ``export NAME=value`` line the demo's banner prints. ``curl`` and the
  ``paymux`` CLI of this test's environment are on ``PATH``.
- The blocks of one page run in order, as one reader's shell session: a variable a block sets
  (``PAY_ID=$(curl … | python3 -c …)``) is there for the page's later blocks. Pages do not share
  variables.
- A ```json block right after a run block (blank lines aside) is its expected output: the last
  JSON value the block prints must contain every key shown with the value shown. In a string,
  ``…`` stands for any text (``"pay_…"``); ``…`` (or ``"…"``) as a value for any value; a bare
  ``…`` among keys or items for those left out.
- A block fails if it exits non-zero or prints an API error object (``{"error": …}``) that its
  expected output does not show.

One demo (SQLite, in a temporary directory, on a free port) serves the whole module.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import httpx
import pytest

from tests.fixtures.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
BIN = Path(sys.executable).parent
DEMO_KEY = "sk_test_docsexamples0123456789"
OPERATOR_TOKEN = "op_docs_examples_token"
BLOCK_TIMEOUT_SECONDS = 120

_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_NOT_RUN = re.compile(r"<!--\s*not-run:\s*\S.*-->")
_EXPORT = re.compile(r"^\s*export\s+(.*)$")
_BANNER = "paymux demo is running"


# ------------------------------------------------------------------ extracting the examples
@dataclass
class Block:
    page: str
    line: int
    lang: str
    text: str
    run: bool = False
    expected: str | None = None
    """The ```json block that follows, as text."""


@dataclass
class Page:
    name: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def runnable(self) -> list[Block]:
        return [b for b in self.blocks if b.run]


def parse_page(path: Path) -> Page:
    """Every fenced block of a page, which of them run, and each run block's expected output."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = Page(path.name)
    previous = ""  # the last non-blank line outside a block
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            if lines[i].strip():
                previous = lines[i]
            i += 1
            continue
        indent, lang, start = match.group(1), match.group(2), i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        block = Block(path.name, start + 1, lang, "\n".join(body) + "\n")
        block.run = lang in ("sh", "bash") and not _NOT_RUN.search(previous)
        if lang == "json" and page.blocks and page.blocks[-1].run and previous == "```":
            page.blocks[-1].expected = block.text
        page.blocks.append(block)
        previous = "```"
        i += 1
    return page


PAGES = [parse_page(path) for path in DOCS]


# ------------------------------------------------------------------ expected output
def _drop_bare_ellipses(text: str) -> str:
    """``text`` without the ``…`` that stand outside JSON strings (as a value: ``"…"``)."""
    out, in_string, escaped = [], False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "…":
            if "".join(out).rstrip().endswith(":"):
                out.append('"…"')  # a value: anything
            continue
        out.append(char)
    return "".join(out)


def load_expected(text: str) -> Any:
    """The expected JSON with bare ``…`` (omitted keys/items) taken out."""
    cleaned = _drop_bare_ellipses(text)
    cleaned = re.sub(r",(\s*[}\]])", r"\1", cleaned)  # a comma left before a closing bracket
    cleaned = re.sub(r"([{\[]\s*),", r"\1", cleaned)  # … first in an object or list
    cleaned = re.sub(r",(\s*),", r",\1", cleaned)  # … between two items
    return json.loads(cleaned)


def json_values(stdout: str) -> list[Any]:
    """Every top-level JSON object or array printed, in order (curl prints no newline)."""
    decoder = json.JSONDecoder()
    values, i = [], 0
    while i < len(stdout):
        if stdout[i] not in "{[":
            i += 1
            continue
        try:
            value, end = decoder.raw_decode(stdout, i)
        except ValueError:
            i += 1
            continue
        values.append(value)
        i = end
    return values


def mismatches(expected: Any, actual: Any, where: str = "$") -> list[str]:
    """Where ``actual`` differs from ``expected`` (only what ``expected`` shows counts)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {actual!r}"]
        out: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{where}.{key}: missing")
            else:
                out += mismatches(value, actual[key], f"{where}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) < len(expected):
            return [f"{where}: expected at least {len(expected)} items, got {actual!r}"]
        pairs = enumerate(zip(expected, actual, strict=False))
        return [m for n, (e, a) in pairs for m in mismatches(e, a, f"{where}[{n}]")]
    if expected == "…":
        return []
    if isinstance(expected, str) and "…" in expected:
        pattern = ".*".join(re.escape(part) for part in expected.split("…"))
        ok = isinstance(actual, str) and re.fullmatch(pattern, actual, re.DOTALL)
        return [] if ok else [f"{where}: {actual!r} does not match {expected!r}"]
    return [] if expected == actual else [f"{where}: expected {expected!r}, got {actual!r}"]


# ------------------------------------------------------------------ the demo
@dataclass
class Demo:
    directory: Path
    env: dict[str, str]


def _wait_until_listening(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"paymux demo exited ({proc.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"paymux demo did not start:\n{log.read_text()}")


def _banner_exports(proc: subprocess.Popen[bytes], log: Path) -> dict[str, str]:
    """What the banner's ``export NAME=value …`` lines set (once the banner is out)."""
    deadline = time.monotonic() + 30
    while _BANNER not in (text := log.read_text(encoding="utf-8", errors="replace")):
        if time.monotonic() > deadline or proc.poll() is not None:
            pytest.fail(f"paymux demo printed no banner:\n{text}")
        time.sleep(0.1)
    return exports_in(text)


def exports_in(text: str) -> dict[str, str]:
    """What the ``export NAME=value …`` lines of ``text`` set."""
    exports = {}
    for line in text.splitlines():
        if match := _EXPORT.match(line):
            for word in shlex.split(match.group(1), comments=True):
                name, sep, value = word.partition("=")
                if sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
                    exports[name] = value
    return exports


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: the docs' examples use it")
    directory = tmp_path_factory.mktemp("docs-demo")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PAYMUX_") and key not in ("PYTHONPATH",)
    }
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(directory),
        NO_COLOR="1",
        COLUMNS="200",
        PAYMUX_OPERATOR_TOKEN=OPERATOR_TOKEN,
        PAYMUX_RISK_BUDGET_MS="10000",  # a loaded test machine is no engine failure
    )
    log = directory / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "paymux"), "demo", "--port", str(port), "--api-key", DEMO_KEY],
            cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        _wait_until_listening(proc, url, log)
        env.update(
            PAYMUX_URL=url,
            PAYMUX_KEY=DEMO_KEY,
            PAYMUX_ENV="demo",
            PAYMUX_DATABASE_URL=f"sqlite+aiosqlite:///{directory / 'paymux-demo.db'}",
            PAYMUX_PUBLIC_URL=url,
            PAYMUX_OPERATOR_TOKEN=OPERATOR_TOKEN,
        )
        # What a reader copies from the banner wins ($PWD: the demo's directory, as for them).
        scope = {**env, "PWD": str(directory)}
        env.update(
            {k: Template(v).safe_substitute(scope) for k, v in _banner_exports(proc, log).items()}
        )
        yield Demo(directory, env)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ------------------------------------------------------------------ running a page
_SESSION_NOISE = {"_", "SHLVL", "PWD", "OLDPWD", "BASH_EXECUTION_STRING"}


def run_block(block: Block, demo: Demo, env: dict[str, str]) -> list[str]:
    """Run one block in the page's session (``env`` gains what it sets); its problems."""
    dump = demo.directory / ".docs-example-env"
    script = f"set -a\n{block.text}\nenv -0 > {dump}\n"
    where = f"{block.page}:{block.line}"
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=demo.directory, env=env,
            capture_output=True, text=True, timeout=BLOCK_TIMEOUT_SECONDS,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return [f"{where}: still running after {BLOCK_TIMEOUT_SECONDS} s"]
    shown = f"\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    if done.returncode != 0:
        return [f"{where}: exit {done.returncode}{shown}"]
    for item in dump.read_text().split("\0"):
        name, sep, value = item.partition("=")
        if sep and name not in _SESSION_NOISE:
            env[name] = value
    values = json_values(done.stdout)
    try:
        expected = load_expected(block.expected) if block.expected else None
    except ValueError as exc:
        return [f"{where}: its expected output is not JSON (with …): {exc}"]
    shows_error = isinstance(expected, dict) and "error" in expected
    errors = [v for v in values if isinstance(v, dict) and "error" in v]
    if errors and not shows_error:
        return [f"{where}: the API answered an error{shown}"]
    if expected is None:
        return []
    if not values:
        return [f"{where}: printed no JSON, expected output is shown{shown}"]
    found = mismatches(expected, values[-1])
    return [f"{where}: {m}" for m in found] + ([shown] if found else [])


def test_examples_are_found() -> None:
    """The harness sees the docs' examples (a broken parser must not pass everything)."""
    quickstart = next(p for p in PAGES if p.name == "quickstart.md")
    assert len(quickstart.runnable) >= 3
    assert any(b.expected for b in quickstart.runnable)
    assert any(not b.run for p in PAGES for b in p.blocks if b.lang in ("sh", "bash"))


def test_expected_output_matching() -> None:
    expected = load_expected('{"id": "pay_…", "status": "pending", "next_action": {"type": '
                             '"qr_code"}, …, "list": [1, …]}')  # fmt: skip
    good = {"id": "pay_01", "status": "pending", "next_action": {"type": "qr_code", "x": 1},
            "list": [1, 2], "extra": True}  # fmt: skip
    assert mismatches(expected, good) == []
    assert mismatches(expected, {**good, "status": "failed"}) == [
        "$.status: expected 'pending', got 'failed'"
    ]
    assert mismatches(expected, {**good, "id": "re_01"})
    assert mismatches(expected, {k: v for k, v in good.items() if k != "next_action"})
    assert json_values('{"a": 1}{"b": [2]}\nok\n') == [{"a": 1}, {"b": [2]}]
    assert exports_in("  export A=1 B='x y'  # for the CLI\nexported=no\n") == {
        "A": "1",
        "B": "x y",
    }
    assert mismatches(load_expected('{"n": …, "s": "…"}'), {"n": 3, "s": None}) == []
    assert load_expected('{"url": "http://h:…/x", "q": "a\\"…", …}') == {
        "url": "http://h:…/x",
        "q": 'a"…',
    }


@pytest.mark.parametrize("page", [p for p in PAGES if p.runnable], ids=lambda p: p.name)
def test_page_examples_run(page: Page, demo: Demo) -> None:
    env = dict(demo.env)
    problems: list[str] = []
    for block in page.runnable:
        problems += run_block(block, demo, env)
    assert not problems, "\n\n".join(problems)
