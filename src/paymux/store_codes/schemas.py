"""Shapes of ``/v1/store_codes``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from paymux.store_codes import service
from paymux.store_codes.models import StoreCode


class StoreCodeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(min_length=1, max_length=127, strip_whitespace=True)] = (
        Field(description="Shown to the customer and used as the payments' subject.")
    )
    store_id: Annotated[
        str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-.:]+$")
    ] = Field(description="Your id of the store; every payment carries it in `metadata`.")
    amount: int | None = Field(
        default=None, gt=0, le=10**15,
        description="A fixed amount in minor units; omitted: the customer enters it.",
    )  # fmt: skip
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "CNY"
    active: bool = True


class StoreCodeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    active: bool | None = None
    name: (
        Annotated[str, StringConstraints(min_length=1, max_length=127, strip_whitespace=True)]
        | None
    ) = None


class StoreCodeOut(BaseModel):
    id: str
    object: Literal["store_code"] = "store_code"
    livemode: bool
    name: str
    store_id: str
    amount: int | None
    currency: str
    active: bool
    url: str
    """The page the printed QR opens."""
    qr_svg_url: str
    qr_png_url: str
    created_at: dt.datetime

    @classmethod
    def of(cls, store_code: StoreCode, *, public_url: str) -> StoreCodeOut:
        base = f"{public_url.rstrip('/')}/v1/store_codes/{store_code.id}"
        return cls(
            id=store_code.id, livemode=store_code.livemode, name=store_code.name,
            store_id=store_code.store_id, amount=store_code.amount,
            currency=store_code.currency, active=store_code.active,
            url=service.url_of(public_url, store_code), qr_svg_url=f"{base}/qr.svg",
            qr_png_url=f"{base}/qr.png", created_at=store_code.created_at,
        )  # fmt: skip
