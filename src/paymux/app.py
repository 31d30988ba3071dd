"""create_app(): routers, lifespan, middleware — wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from paymux import __version__
from paymux.config import Settings, get_settings
from paymux.kit.logging import configure_logging
from paymux.kit.openapi import install_openapi
from paymux.kit.web import RejectNulMiddleware, install_error_handlers
from paymux.runtime import Runtime

log = structlog.get_logger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    sandboxes: Mapping[str, Any] | None = None,
    run_worker: bool = False,
    extra_routers: list[Any] | None = None,
) -> FastAPI:
    """Build the gateway.

    ``runtime``: use this one (tests) instead of building one in the lifespan.
    ``sandboxes``: channel sandboxes to mount at ``/sandbox/<channel>`` (demo, tests).
    ``run_worker``: run the worker loop inside this process (``paymux demo``).
    """
    settings = settings or (runtime.settings if runtime else get_settings())
    if os.environ.get("PAYMUX_RUN_WORKER") == "1":  # `paymux serve --with-worker`
        run_worker = True
    configure_logging(settings.log_level, json=settings.log_json)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        rt = runtime or Runtime.build(settings)
        app.state.runtime = rt
        worker_task: asyncio.Task[None] | None = None
        if run_worker:
            from paymux.jobs.worker import Worker

            worker = Worker(rt)
            worker_task = asyncio.create_task(worker.run_forever())
        try:
            yield
        finally:
            if worker_task is not None:
                worker_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task
            for sandbox in (sandboxes or {}).values():
                await sandbox.core.aclose()
            if owned:
                await rt.aclose()

    app = FastAPI(
        title="paymux",
        version=__version__,
        summary="Self-hosted aggregated payment gateway",
        lifespan=lifespan,
        docs_url=None,  # served from local files by install_openapi
        redoc_url=None,
    )
    if runtime is not None:
        app.state.runtime = runtime
    app.add_middleware(RejectNulMiddleware)
    install_error_handlers(app)  # after: its catch-all must wrap every other middleware

    from paymux.cashier.endpoints import router as cashier_router
    from paymux.channel_accounts.endpoints import router as channel_accounts_router
    from paymux.escrow.endpoints import router as escrow_router
    from paymux.inbox.endpoints import router as inbox_router
    from paymux.ledger.endpoints import router as ledger_router
    from paymux.merchants.endpoints import public_router as brand_router
    from paymux.merchants.endpoints import router as operator_router
    from paymux.payments.endpoints import router as payments_router
    from paymux.payouts.endpoints import router as payouts_router
    from paymux.recon.endpoints import merchant_router as recon_router
    from paymux.recon.endpoints import operator_router as recon_operator_router
    from paymux.refunds.endpoints import router as refunds_router
    from paymux.risk.endpoints import operator_router as risk_operator_router
    from paymux.risk.endpoints import router as risk_router
    from paymux.routing.endpoints import router as routing_router
    from paymux.settlement.endpoints import router as settlement_router
    from paymux.splits.endpoints import router as splits_router
    from paymux.store_codes.endpoints import public_router as store_code_pages_router
    from paymux.store_codes.endpoints import router as store_codes_router
    from paymux.wallets.endpoints import router as wallets_router
    from paymux.webhooks.endpoints import router as webhooks_router

    # Matched in this order, one route at a time: the hot paths (create, notifications) first.
    app.include_router(payments_router)
    app.include_router(inbox_router)
    app.include_router(escrow_router)
    app.include_router(refunds_router)
    app.include_router(splits_router)
    app.include_router(wallets_router)
    app.include_router(payouts_router)
    app.include_router(settlement_router)
    app.include_router(ledger_router)
    app.include_router(webhooks_router)
    app.include_router(routing_router)
    app.include_router(operator_router)
    app.include_router(brand_router)
    app.include_router(channel_accounts_router)
    app.include_router(cashier_router)
    app.include_router(store_codes_router)
    app.include_router(store_code_pages_router)
    app.include_router(recon_router)
    app.include_router(recon_operator_router)
    app.include_router(risk_router)
    app.include_router(risk_operator_router)
    for router in extra_routers or []:
        app.include_router(router)
    install_openapi(app)
    for name, sandbox in (sandboxes or {}).items():
        app.mount(f"/sandbox/{name}", sandbox.app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)

    return app
