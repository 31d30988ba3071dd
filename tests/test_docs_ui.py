"""``/docs`` and ``/redoc`` work offline: every script, stylesheet and icon they reference is
served by the gateway itself from the vendored npm packages, and no other origin appears."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from paymux.app import create_app
from paymux.config import Environment, Settings
from paymux.kit.openapi import STATIC_DIR

LOCK = Path(__file__).resolve().parent.parent / "scripts" / "vendor.lock.json"


@pytest.fixture
async def client() -> httpx.AsyncClient:
    app = create_app(Settings(env=Environment.dev, database_url="sqlite+aiosqlite://"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as c:
        yield c


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_local_assets(client: httpx.AsyncClient, page: str) -> None:
    r = await client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I), html
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    refs += re.findall(r"""(?:url|spec-url)\s*[:=]\s*["']([^"']+)["']""", html)
    assets = [u for u in refs if u.startswith("/static/")]
    assert len(assets) >= (3 if page == "/docs" else 1), refs
    assert "/openapi.json" in refs
    for url in [*refs]:
        assert url.startswith("/"), url
        got = await client.get(url)
        assert got.status_code == 200, url
        assert len(got.content) > 0
    scripts = [u for u in assets if u.endswith(".js")]
    for url in scripts:
        got = await client.get(url)
        assert "javascript" in got.headers["content-type"], url


def test_vendored_files_match_the_lock_and_keep_their_licences() -> None:
    packages = json.loads(LOCK.read_text())["packages"]
    names = {p["name"] for p in packages}
    assert {"swagger-ui-dist", "redoc"} <= names
    for pkg in packages:
        assert pkg["integrity"].startswith("sha512-")
        assert pkg["tarball"].endswith(f"-{pkg['version']}.tgz")
        folder = STATIC_DIR / "vendor" / f"{pkg['name']}-{pkg['version']}"
        for rel in pkg["files"]:
            assert (folder / rel).is_file(), rel
        assert (folder / "LICENSE").is_file()
    # one version per package: the script removes what a new lock replaces
    dirs = sorted(p.name for p in (STATIC_DIR / "vendor").iterdir())
    assert dirs == sorted(f"{p['name']}-{p['version']}" for p in packages)


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium is not installed")
def test_swagger_ui_renders_in_a_browser_offline(tmp_path: Path) -> None:
    """Bonus: the page really renders (headless chromium, every non-local request blocked)."""
    import socket
    import threading

    import uvicorn

    app = create_app(Settings(env=Environment.dev, database_url="sqlite+aiosqlite://"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        done = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
             f"--user-data-dir={tmp_path}", "--virtual-time-budget=8000",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             "--dump-dom", f"http://127.0.0.1:{port}/docs"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        server.should_exit = True
        thread.join(10)
    assert "swagger-ui" in done.stdout
    assert "/v1/payments" in done.stdout, done.stdout[-2000:]
