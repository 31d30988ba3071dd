"""``paymux demo`` as a person runs it: real processes on random ports with temporary databases.

A second demo in the same folder (same port, or another port on the same file) is refused with
who holds what and changes nothing; the lock dies with its process (kill -9 leaves none); the
banner appears only once the port accepts connections and everything in it works; the webhook
page shows the gateway's deliveries (pending ones and their failed attempts too) next to what
the receiver got, and patches itself from JSON instead of reloading."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.servers import free_port

PAYMUX = Path(sys.executable).with_name("paymux")
STARTUP_SECONDS = 120  # a loaded CI machine imports slowly; only a ceiling, never asserted


@dataclass
class Demo:
    process: subprocess.Popen[str]
    port: int
    banner: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def field(self, label: str) -> str:
        found = re.search(rf"^  {label}\s+(\S+)$", self.banner, re.MULTILINE)
        assert found, (label, self.banner)
        return found.group(1)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYMUX_")}
    return env | {"PYTHONUNBUFFERED": "1", "PAYMUX_LOG_LEVEL": "WARNING"}


def launch(folder: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(PAYMUX), "demo", "--port", str(port), *extra], cwd=folder, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_banner(process: subprocess.Popen[str], port: int) -> Demo:
    """Read stdout up to the banner's last line; the port must accept at the banner's first."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"demo exited: {process.wait()} {process.stderr.read()}")  # type: ignore[union-attr]
        if line.startswith("paymux demo is running"):
            assert accepts(port), "banner printed before the server listens"
        lines.append(line)
        if line.startswith("  paymux payment list"):
            return Demo(process, port, "".join(lines))
    raise AssertionError("no banner")


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def first(tmp_path: Path) -> Iterator[Demo]:
    port = free_port()
    process = launch(tmp_path, port)
    try:
        yield wait_banner(process, port)
    finally:
        stop(process)


def refused(folder: Path, port: int, *extra: str) -> str:
    second = launch(folder, port, *extra)
    out, err = second.communicate(timeout=STARTUP_SECONDS)
    assert second.returncode == 2, (out, err)
    assert "paymux demo is running" not in out
    return " ".join(err.split())


def test_a_second_demo_is_refused_and_the_first_keeps_working(first: Demo, tmp_path: Path) -> None:
    key = first.field("Test API key")
    auth = {"Authorization": f"Bearer {key}"}
    r = httpx.post(f"{first.base}/v1/payments", headers=auth | {"Idempotency-Key": "o-1"}, json={
        "amount": 1999, "currency": "CNY", "method": "alipay_qr", "out_trade_no": "o-1",
        "subject": "Demo T-shirt"})  # fmt: skip
    assert r.status_code == 201, r.text
    database = tmp_path / "paymux-demo.db"
    before = database.stat()
    pid = first.process.pid

    same_port = refused(tmp_path, first.port)
    assert f"port {first.port} on 127.0.0.1 is busy" in same_port
    assert f"pid {pid}" in same_port and str(database) in same_port
    assert "make demo PORT=8001" in same_port

    same_file = refused(tmp_path, free_port())
    assert f"the database {database} is in use" in same_file and f"pid {pid}" in same_file
    assert "--db" in same_file

    # The first demo still answers with its key, from its intact database.
    listed = httpx.get(f"{first.base}/v1/payments", headers=auth).json()
    assert [p["out_trade_no"] for p in listed["data"]] == ["o-1"]
    after = database.stat()  # the same file, not deleted and recreated
    assert (after.st_ino, after.st_size >= before.st_size) == (before.st_ino, True)
    # Everything in the banner works: the ids, the docs, the CLI environment lines.
    assert first.field("App").startswith("app_") and first.field("Merchant").startswith("mch_")
    assert httpx.get(f"{first.base}/docs").status_code == 200
    env = _env() | dict(re.findall(r"^  export (PAYMUX_\w+)=(\S+)$", first.banner, re.MULTILINE))
    cli = subprocess.run([str(PAYMUX), "payment", "list", "--app", first.field("App")], env=env,
                         capture_output=True, text=True, timeout=STARTUP_SECONDS)  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert '"out_trade_no": "o-1"' in cli.stdout


def test_another_file_and_port_runs_beside_it_and_kill_9_leaves_no_lock(
    first: Demo, tmp_path: Path
) -> None:
    port = free_port()
    other = launch(tmp_path, port, "--db", "other.db")
    try:
        beside = wait_banner(other, port)
        assert beside.field("Database") == str(tmp_path / "other.db")
        assert (
            httpx.get(
                f"{first.base}/v1/payments",
                headers={"Authorization": f"Bearer {first.field('Test API key')}"},
            ).status_code
            == 200
        )
    finally:
        stop(other)
    stop(first.process, signal.SIGKILL)
    again = launch(tmp_path, first.port)  # the kernel dropped the dead demo's lock and port
    try:
        assert wait_banner(again, first.port).field("Database") == str(tmp_path / "paymux-demo.db")
    finally:
        stop(again)


def test_the_webhook_page_shows_the_gateways_deliveries(first: Demo) -> None:
    auth = {"Authorization": f"Bearer {first.field('Test API key')}"}
    # A second endpoint nobody listens at: its delivery stays pending with failed attempts.
    dead = f"http://127.0.0.1:{free_port()}/hooks"
    r = httpx.post(f"{first.base}/v1/webhook_endpoints", headers=auth, json={"url": dead})
    assert r.status_code == 201, r.text
    r = httpx.post(f"{first.base}/v1/payments", headers=auth | {"Idempotency-Key": "w-1"}, json={
        "amount": 500, "currency": "CNY", "method": "alipay_qr", "out_trade_no": "w-1",
        "subject": "hooks"})  # fmt: skip
    assert r.status_code == 201, r.text
    payment = r.json()["id"]
    r = httpx.post(f"{first.base}/v1/payments/{payment}/close",
                   headers=auth | {"Idempotency-Key": "w-1-close"})  # fmt: skip
    assert r.status_code == 200, r.text

    page = httpx.get(f"{first.base}/demo/webhooks")
    assert page.status_code == 200 and "refresh" not in page.text.lower().split("<script")[0]
    csp = page.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
    assert nonce and f'<script nonce="{nonce.group(1)}">' in page.text
    assert "default-src 'none'" in csp and "/demo/webhooks/state" in page.text
    assert httpx.get(f"{first.base}/demo/webhooks").headers["content-security-policy"] != csp

    deadline = time.monotonic() + 60
    while True:
        state = httpx.get(f"{first.base}/demo/webhooks/state").json()
        by_endpoint = {d["endpoint"]: d for d in state["deliveries"]
                       if d["type"] == "payment.closed"}  # fmt: skip
        ours = by_endpoint.get(first.field("Webhooks go to"))
        failing = by_endpoint.get(dead)
        if ours and ours["status"] == "delivered" and failing and failing["attempts"]:
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert ours["attempts"][0]["status_code"] == 200 and ours["received"]["signature_valid"]
    assert ours["data"]["id"] == payment
    assert failing["status"] == "pending" and failing["received"] is None
    assert failing["attempts"][0]["status_code"] is None and failing["next_attempt_at"]
    assert all("response" not in a for a in failing["attempts"])  # status lines, never bodies
    (got,) = [g for g in state["received"] if g["type"] == "payment.closed"]
    assert got["webhook_id"] == ours["event"] and got["signature_valid"] is True


# A just-big-enough DOM for the page's script (no browser on the test machine): elements with
# children, table cells and text, so the patching itself is exercised by node.
FAKE_DOM = r"""
class El {
  constructor(tag) { this.tag = tag; this.children = []; this.parent = null; this.dataset = {};
                     this.className = ""; this._text = ""; }
  get cells() { return this.children.filter((c) => c.tag === "td"); }
  get firstChild() { return this.children[0] || null; }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(""); }
  set textContent(v) { this.children = []; this._text = String(v); }
  insertCell() { const td = new El("td"); this.appendChild(td); return td; }
  appendChild(c) { if (c.parent) c.remove(); c.parent = this; this.children.push(c); return c; }
  append(...cs) { cs.forEach((c) => this.appendChild(c)); }
  insertBefore(c, ref) {
    if (c.parent) c.remove();
    c.parent = this;
    const i = ref ? this.children.indexOf(ref) : -1;
    if (i < 0) this.children.push(c); else this.children.splice(i, 0, c);
    return c;
  }
  replaceChildren() { this.children = []; this._text = ""; }
  remove() { const p = this.parent; if (p) p.children.splice(p.children.indexOf(this), 1);
             this.parent = null; }
}
const ids = {deliveries: new El("tbody"), received: new El("tbody"), status: new El("p")};
globalThis.document = {getElementById: (id) => ids[id], createElement: (t) => new El(t)};
globalThis.setInterval = () => 0;
globalThis.fetch = () => new Promise(() => {});
const fs = require("fs");
require("vm").runInThisContext(fs.readFileSync(process.argv[2], "utf8") +
                               "\n;globalThis.render = render;");
const [before, after] = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
render(before);
const row = ids.deliveries.children[0];
const details = row.cells[7].firstChild;
render(after);
const rows = ids.deliveries.children;
console.log(JSON.stringify({
  same_row: rows[1] === row, same_details: row.cells[7].firstChild === details,
  ids: rows.map((r) => r.cells[0].textContent), status: row.cells[3].textContent,
  status_class: row.cells[3].className, attempts: row.cells[4].textContent,
  received: ids.received.children.map((r) => r.cells[1].textContent),
}));
"""


def _delivery(ident: str, status: str, attempts: list[dict[str, object]]) -> dict[str, object]:
    return {"id": ident, "event": f"evt_{ident}", "type": "payment.succeeded",
            "endpoint": "http://127.0.0.1:9/hooks", "status": status,
            "attempt_count": len(attempts), "next_attempt_at": None, "attempts": attempts,
            "received": None, "data": {"id": "pay_1"}}  # fmt: skip


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's script")
def test_the_webhook_page_patches_rows_in_place(tmp_path: Path) -> None:
    """A new delivery is inserted above, a changed one is updated in its row: no row (and no
    opened event) is rebuilt, so the reader keeps their place."""
    from paymux.demo import _PAGE

    script = re.search(r"<script nonce=\"\{\{nonce\}\}\">(.*)</script>", _PAGE.read_text(), re.S)
    assert script
    (tmp_path / "page.js").write_text(script.group(1))
    failed = {"at": "2026-01-01T00:00:00+00:00", "status_code": 503, "error": None,
              "duration_ms": 12}  # fmt: skip
    ok = failed | {"status_code": 200}
    got = {"seq": 1, "received_at": "2026-01-01T00:00:05+00:00", "webhook_id": "evt_a",
           "signature_valid": True, "type": "payment.succeeded"}  # fmt: skip
    states = [
        {"deliveries": [_delivery("a", "pending", [failed])], "received": []},
        {
            "deliveries": [
                _delivery("b", "pending", []),
                _delivery("a", "delivered", [failed, ok]),
            ],
            "received": [got],
        },
    ]
    (tmp_path / "states.json").write_text(json.dumps(states))
    (tmp_path / "driver.js").write_text(FAKE_DOM)
    run = subprocess.run(["node", str(tmp_path / "driver.js"), str(tmp_path / "page.js"),
                          str(tmp_path / "states.json")], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["ids"] == ["evt_b", "evt_a"] and seen["same_row"] and seen["same_details"]
    assert (seen["status"], seen["status_class"]) == ("delivered", "delivered")
    assert "HTTP 503" in seen["attempts"] and "HTTP 200" in seen["attempts"]
    assert seen["received"] == ["evt_a"]
