"""The public shapes of wallets."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from paymux.payments.schemas import ReturnUrl
from paymux.wallets.models import OwnerType, Wallet

Reference = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                             pattern=r"^[A-Za-z0-9_\-.:@]+$")]  # fmt: skip
OutNo = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                         pattern=r"^[A-Za-z0-9_\-|*.]+$")]  # fmt: skip


class WalletCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner_type: OwnerType = OwnerType.user
    reference: Reference
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "CNY"
    verification_level: int = Field(default=0, ge=0, le=2)


class WalletUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verification_level: int = Field(ge=0, le=2)


class Balances(BaseModel):
    available: int
    """Spendable now (excludes what open holds reserve)."""
    held: int
    """Reserved by operations in flight (withdrawals, refunds)."""
    frozen: int
    pending: int
    points: int


class WalletOut(BaseModel):
    id: str
    object: str = "wallet"
    livemode: bool
    owner_type: str
    reference: str
    currency: str
    verification_level: int
    balances: Balances
    created_at: dt.datetime

    @classmethod
    def of(cls, w: Wallet, balances: Balances) -> WalletOut:
        return cls(
            id=w.id, livemode=w.livemode, owner_type=w.owner_type, reference=w.reference,
            currency=w.currency, verification_level=w.verification_level, balances=balances,
            created_at=w.created_at,
        )  # fmt: skip


class TransferCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    destination: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    amount: int = Field(gt=0, le=10**15)
    out_transfer_no: OutNo
    description: Annotated[str, StringConstraints(max_length=200)] = ""


class TransferOut(BaseModel):
    id: str
    object: str = "wallet_transfer"
    source: str
    destination: str
    amount: int
    currency: str
    out_transfer_no: str
    status: Literal["succeeded", "review", "canceled"] = "succeeded"
    """``review``: risk holds it on the source until a reviewer approves (then it succeeds)
    or declines it (canceled, the money stays with the source)."""
    created_at: dt.datetime


class FreezeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["freeze", "unfreeze"]
    amount: int = Field(gt=0, le=10**15)
    out_request_no: OutNo
    reason: Annotated[str, StringConstraints(max_length=200)] = ""


class PointsCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["grant", "redeem"]
    points: int = Field(gt=0, le=10**12)
    out_request_no: OutNo
    reason: Annotated[str, StringConstraints(max_length=200)] = ""


class TopUpCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: int = Field(gt=0, le=10**15)
    method: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    out_trade_no: Annotated[str, StringConstraints(min_length=1, max_length=32,
                                                   pattern=r"^[A-Za-z0-9_\-|*.]+$")]  # fmt: skip
    subject: Annotated[
        str, StringConstraints(min_length=1, max_length=127, strip_whitespace=True)
    ] = "钱包充值"
    customer: dict[str, Annotated[str, StringConstraints(max_length=128)]] = Field(
        default_factory=dict
    )
    return_url: ReturnUrl | None = None  # checked here: a 400 about the top-up body


class StatementLine(BaseModel):
    id: str
    """The ledger entry id (cursor for ``starting_after``)."""
    account: Literal["available", "frozen", "pending", "points"]
    direction: Literal["in", "out"]
    amount: int
    currency: str
    description: str
    transaction: str
    metadata: dict[str, str]
    created_at: dt.datetime
