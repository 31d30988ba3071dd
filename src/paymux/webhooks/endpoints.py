"""``/v1/webhook_endpoints`` and ``/v1/events``: thin HTTP over webhooks.service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import ListResponse, PageDep, ReadSessionDep, RuntimeDep, SessionDep
from paymux.merchants.auth import AuthDep
from paymux.webhooks import service
from paymux.webhooks.repository import WebhookRepository
from paymux.webhooks.schemas import (
    Deleted,
    DeliveryOut,
    EndpointCreate,
    EndpointOut,
    EventOut,
    ResendRequest,
)

router = APIRouter(prefix="/v1", tags=["webhooks"], route_class=IdempotentRoute)


@router.post("/webhook_endpoints", status_code=201, response_model=EndpointOut)
async def create_endpoint(body: EndpointCreate, auth: AuthDep, rt: RuntimeDep) -> EndpointOut:
    """The response carries the endpoint's ``whsec_`` secret; it is never shown again.

    The URL must be http(s) (https in live mode) and point at a public address: a host that
    is, or resolves to, a loopback, private, link-local, metadata or otherwise non-public
    address is refused with ``url_not_allowed`` unless the operator allowed its range.
    """
    url = await service.vet_url(rt.egress, body.url, livemode=auth.livemode)  # DNS: no tx open
    async with rt.db.transaction() as session:
        endpoint, secret = await service.create_endpoint(
            session, rt.vault, app_id=auth.app_id, livemode=auth.livemode,
            url=url, events=body.events, description=body.description,
        )  # fmt: skip
    return EndpointOut.of(endpoint, secret)


@router.get("/webhook_endpoints", response_model=ListResponse[EndpointOut])
async def list_endpoints(auth: AuthDep, session: ReadSessionDep) -> ListResponse[EndpointOut]:
    rows = await WebhookRepository(session).endpoints(auth.app_id, auth.livemode)
    return ListResponse[EndpointOut](data=[EndpointOut.of(e) for e in rows], has_more=False)


@router.get("/webhook_endpoints/{endpoint_id}", response_model=EndpointOut)
async def retrieve_endpoint(
    endpoint_id: str, auth: AuthDep, session: ReadSessionDep
) -> EndpointOut:
    endpoint = await service.get_endpoint(
        session, app_id=auth.app_id, livemode=auth.livemode, endpoint_id=endpoint_id
    )
    return EndpointOut.of(endpoint)


@router.delete("/webhook_endpoints/{endpoint_id}", response_model=Deleted)
async def delete_endpoint(endpoint_id: str, auth: AuthDep, session: SessionDep) -> Deleted:
    endpoint = await service.delete_endpoint(
        session, app_id=auth.app_id, livemode=auth.livemode, endpoint_id=endpoint_id
    )
    return Deleted(id=endpoint.id, object="webhook_endpoint")


@router.get("/events", response_model=ListResponse[EventOut])
async def list_events(
    auth: AuthDep, session: ReadSessionDep, page: PageDep,
    type: Annotated[str | None, Query(max_length=64)] = None,
) -> ListResponse[EventOut]:  # fmt: skip
    """Newest first. Page with ``starting_after`` = the last id of the previous page."""
    rows, has_more = await WebhookRepository(session).events(
        auth.app_id, auth.livemode, type_=type, limit=page.limit,
        starting_after=page.starting_after,
    )  # fmt: skip
    return ListResponse[EventOut](data=[EventOut.of(e) for e in rows], has_more=has_more)


@router.get("/events/{event_id}", response_model=EventOut)
async def retrieve_event(event_id: str, auth: AuthDep, session: ReadSessionDep) -> EventOut:
    event = await service.get_event(
        session, app_id=auth.app_id, livemode=auth.livemode, event_id=event_id
    )
    return EventOut.of(event)


@router.get("/events/{event_id}/deliveries", response_model=ListResponse[DeliveryOut])
async def list_deliveries(
    event_id: str, auth: AuthDep, session: ReadSessionDep
) -> ListResponse[DeliveryOut]:
    """Every delivery of the event (one per endpoint, plus resends) with its attempt log."""
    event = await service.get_event(
        session, app_id=auth.app_id, livemode=auth.livemode, event_id=event_id
    )
    repo = WebhookRepository(session)
    deliveries = await repo.deliveries_of(event.id)
    attempts = await repo.attempts_of([d.id for d in deliveries])
    return ListResponse[DeliveryOut](
        data=[DeliveryOut.of(d, attempts[d.id]) for d in deliveries], has_more=False
    )


@router.post("/events/{event_id}/resend", response_model=ListResponse[DeliveryOut])
async def resend_event(
    event_id: str, auth: AuthDep, session: SessionDep, body: ResendRequest | None = None
) -> ListResponse[DeliveryOut]:
    """Queue the event again now (a new delivery per endpoint)."""
    deliveries = await service.resend(
        session, app_id=auth.app_id, livemode=auth.livemode, event_id=event_id,
        endpoint_id=body.endpoint if body else None,
    )  # fmt: skip
    return ListResponse[DeliveryOut](data=[DeliveryOut.of(d) for d in deliveries], has_more=False)
