"""The hosted cashier page: server time of ``GET /pay/{id}`` (a pending WeChat QR payment: the
payment, the cashier view, the merchant and the QR rendered) at p50/p99, and what a first visit
transfers (the page plus its CSS and scripts, uncompressed).

The gateway runs in-process (as in tests/conftest.py) with the sandboxes mounted, on its own
SQLite file database; requests go through ``httpx.ASGITransport``, so the time measured is the
server's, with no network.

    python bench/cashier.py [--requests 300] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from paymux.app import create_app
from paymux.config import Environment, Settings
from paymux.demo import make_sandboxes, provision
from paymux.kit import migrate
from paymux.runtime import Runtime

GATEWAY = "http://gateway.test"


class _Lazy(httpx.AsyncBaseTransport):
    def __init__(self, holder: dict[str, httpx.AsyncBaseTransport]) -> None:
        self.holder = holder

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.holder["t"].handle_async_request(request)


async def run(requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await migrate.upgrade(url)
        settings = Settings(env=Environment.test, database_url=url, public_url=GATEWAY,
                            log_level="WARNING", channel_timeout_seconds=5.0)  # fmt: skip
        holder: dict[str, httpx.AsyncBaseTransport] = {}
        channel_http = httpx.AsyncClient(mounts={GATEWAY: _Lazy(holder)}, timeout=5.0)
        sandboxes = make_sandboxes(channel_http)
        rt = Runtime.build(settings, channel_http=channel_http)
        app = create_app(settings, runtime=rt, sandboxes=sandboxes)
        holder["t"] = httpx.ASGITransport(app=app)
        done = await provision(rt, sandboxes, public_url=GATEWAY, api_key=None,
                               webhook_url=f"{GATEWAY}/healthz")  # fmt: skip
        async with httpx.AsyncClient(transport=holder["t"], base_url=GATEWAY) as client:
            r = await client.post(
                "/v1/payments", headers={"Authorization": f"Bearer {done.api_key}"},
                json={"amount": 1999, "currency": "CNY", "method": "wechat_native",
                      "subject": "Bench", "out_trade_no": uuid.uuid4().hex[:20]},
            )  # fmt: skip
            r.raise_for_status()
            page = f"/pay/{r.json()['id']}"
            headers = {"Accept": "text/html", "Accept-Language": "zh-CN",
                       "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120"}  # fmt: skip
            for _ in range(20):  # warm caches (templates, catalogues)
                (await client.get(page, headers=headers)).raise_for_status()
            samples = []
            for _ in range(requests):
                t0 = time.perf_counter()
                resp = await client.get(page, headers=headers)
                samples.append((time.perf_counter() - t0) * 1000)
                resp.raise_for_status()
            total = len(resp.content)
            for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', resp.text):
                total += len((await client.get(asset)).content)
        for sandbox in sandboxes.values():
            await sandbox.core.aclose()
        await channel_http.aclose()
        await rt.aclose()
    cuts = statistics.quantiles(samples, n=100)
    return {"page_p50_ms": round(cuts[49], 2), "page_p99_ms": round(cuts[98], 2),
            "page_kb": round(total / 1024, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    args = parser.parse_args()
    figures = asyncio.run(run(args.requests))
    print(f"GET /pay/{{id}}: p50 {figures['page_p50_ms']} ms, p99 {figures['page_p99_ms']} ms")
    print(f"first visit transfers {figures['page_kb']} KB (page + CSS + scripts, uncompressed)")
    if args.json:
        print(json.dumps({"benchmark": "cashier", **figures}))


if __name__ == "__main__":
    main()
