"""``paymux demo``: the whole gateway on a SQLite file, for trying paymux out.

Order matters: the port is bound and the database file locked *before* any file is touched,
so a second demo in the same folder (or on the same file) is refused with who holds what and
changes nothing; the banner is printed only once uvicorn listens, so everything in it works."""

from __future__ import annotations

import asyncio
import secrets
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from paymux.cli.common import app
from paymux.cli.output import fail, progress
from paymux.config import Environment, Settings
from paymux.kit import migrate
from paymux.kit.errors import PaymuxError
from paymux.runtime import Runtime


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    api_key: Annotated[
        str | None, typer.Option(help="Use this test key (sk_test_…) instead of a random one.")
    ] = None,
    webhook_url: Annotated[
        str | None, typer.Option(help="Send webhooks here instead of the demo receiver.")
    ] = None,
    database: Annotated[Path, typer.Option(
        "--db", "--database",
        help="SQLite file, recreated at start (refused while another demo uses it).")] = Path(
        "paymux-demo.db"),
) -> None:  # fmt: skip
    """Gateway + worker + every channel sandbox + a demo merchant, on SQLite."""
    from paymux import demo as demo_mod

    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    public_url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"
    db = database.resolve()
    lock = demo_mod.DatabaseLock(db)
    try:
        sock = demo_mod.claim_port(host, port)
    except demo_mod.DemoBusy as exc:
        holder = demo_mod.describe(lock.holder())
        used = f"; the database {db} is in use{holder}" if holder else ""
        fail("demo_busy", f"{exc}{used}. Pick another port: `make demo PORT=8001` or "
             "`paymux demo --port 8001` (and `--db other.db` for a second demo).", 2)  # fmt: skip
    try:
        lock.acquire(public_url)
    except demo_mod.DemoBusy as exc:
        sock.close()
        fail("demo_busy", f"{exc}. Use another file: `paymux demo --db other.db` "
             "(and another port, e.g. `make demo PORT=8001`).", 2)  # fmt: skip
    try:
        _run(sock, db, host=host, port=port, public_url=public_url, api_key=api_key,
             webhook_url=webhook_url)  # fmt: skip
    finally:
        sock.close()
        lock.release()


def _run(sock: socket.socket, db: Path, *, host: str, port: int, public_url: str,
         api_key: str | None, webhook_url: str | None) -> None:  # fmt: skip
    import uvicorn

    from paymux import demo as demo_mod
    from paymux.app import create_app

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    settings = Settings(
        env=Environment.demo,
        database_url=demo_mod.cli_environment(db, public_url)["PAYMUX_DATABASE_URL"],
        public_url=public_url,
        worker_poll_seconds=0.2,
        egress_allow_nets=["127.0.0.0/8", "::1/128"],  # the demo receiver is on loopback
    )
    if settings.operator_token is None:  # the operator API (reconciliation, ledger) on too
        settings = settings.model_copy(
            update={"operator_token": f"op_demo_{secrets.token_hex(12)}"}
        )
    with progress("migrating the demo database"):
        asyncio.run(migrate.upgrade(settings.database_url))
    receiver = demo_mod.DemoReceiver()
    sandboxes = demo_mod.make_sandboxes(httpx.AsyncClient(timeout=10.0))

    async def setup() -> demo_mod.DemoSetup:
        rt = Runtime.build(settings)
        try:
            return await demo_mod.provision(
                rt, sandboxes, public_url=public_url, api_key=api_key, webhook_url=webhook_url
            )
        finally:
            await rt.aclose()

    try:
        done = asyncio.run(setup())
    except PaymuxError as exc:
        fail(exc.code, exc.message, 2)
    receiver.secret, receiver.app_id = done.webhook_secret, done.app_id
    receiver.url = f"{public_url}/demo/webhooks"
    application = create_app(
        settings, sandboxes=sandboxes, run_worker=True, extra_routers=[receiver.router]
    )

    def listening() -> None:
        sys.stdout.write(demo_mod.banner(done, public_url, db, settings.operator_token) + "\n")
        sys.stdout.flush()

    # log_config=None: uvicorn's lines go through paymux's (redacting) logging setup.
    config = uvicorn.Config(application, host=host, port=port, log_level="warning", log_config=None)
    _serve(config, sock, listening)


def _serve(config: Any, sock: socket.socket, on_listening: Callable[[], None]) -> None:
    """uvicorn's server on the bound socket, announcing itself once it accepts connections
    (after the app's startup), never before."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                on_listening()

    Server(config).run(sockets=[sock])
