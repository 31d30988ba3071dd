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


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Mode = Mode.test


class MerchantOut(BaseModel):
    id: str
    object: Literal["merchant"] = "merchant"
    name: str
    created_at: dt.datetime


class AppOut(BaseModel):
    id: str
    object: Literal["app"] = "app"
    name: str
    merchant: str
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
