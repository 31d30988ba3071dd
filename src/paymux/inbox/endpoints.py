"""``/notify/<channel>/<channel account id>``: where channels send their notifications."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from paymux.inbox import service as inbox
from paymux.kit.errors import NotFound
from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import RuntimeDep

router = APIRouter(tags=["channels"], route_class=IdempotentRoute)


@router.post("/notify/{channel}/{account_id}", include_in_schema=False)
async def notify(channel: str, account_id: str, request: Request, rt: RuntimeDep) -> Response:
    body = await request.body()
    received = await inbox.receive(
        rt, channel=channel, account_id=account_id, headers=request.headers, body=body
    )
    if received is None:
        raise NotFound("channel account", account_id)
    ack = received.ack
    return Response(content=ack.body, status_code=ack.status_code, media_type=ack.media_type)
