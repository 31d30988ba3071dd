"""Shapes of the operator API (merchants, apps, keys)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from paymux.merchants.models import Mode

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class MerchantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


class AppCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name = "default"


class MerchantUpdate(BaseModel):
    """Only the fields sent change; ``"timezone": null`` goes back to the platform's zone."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="IANA time zone of the times on this merchant's customer pages "
        "(`Europe/Berlin`); null: the platform's (`PAYMUX_WEB_TIMEZONE`, Asia/Shanghai).",
    )


class AppUpdate(BaseModel):
    """Only the fields sent change; ``null`` removes the display name or the logo."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    display_name: Name | None = Field(
        default=None,
        description="The brand customers see on the cashier and store-code pages "
        "(null: the merchant's and the app's name).",
    )
    logo: Annotated[str, StringConstraints(max_length=150_000)] | None = Field(
        default=None,
        description="The logo as base64: a PNG, JPEG or WebP image (checked by its content), "
        "at most 100 KB; null removes it. Served by the gateway itself (no external URL).",
    )


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Mode = Mode.test


class MerchantOut(BaseModel):
    id: str
    object: Literal["merchant"] = "merchant"
    name: str
    timezone: str = Field(description="The time zone of this merchant's customer pages.")
    created_at: dt.datetime


class AppOut(BaseModel):
    id: str
    object: Literal["app"] = "app"
    name: str
    merchant: str
    display_name: str | None = None
    logo_url: str | None = Field(default=None, description="Where the gateway serves the logo.")
    created_at: dt.datetime


class KeyOut(BaseModel):
    id: str
    object: Literal["api_key"] = "api_key"
    app: str
    mode: Mode
    hint: str
    secret: str | None = Field(default=None, description="Shown only in the create response.")
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None
