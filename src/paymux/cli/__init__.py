"""The ``paymux`` command: the demo (:mod:`paymux.cli.demo`), processes, database and tenant
administration (:mod:`paymux.cli.admin`), payments (:mod:`paymux.cli.payments`), ledger and
wallets (:mod:`paymux.cli.accounts`), the other money commands (:mod:`paymux.cli.money`) and
risk control (:mod:`paymux.cli.risk`). Every command prints through :mod:`paymux.cli.output`."""

from __future__ import annotations

from paymux.cli import (
    accounts,
    admin,
    demo,
    money,
    payments,
    recon,
    risk,
    risk_reviews,
    routing,
    store_codes,
)
from paymux.cli.common import app

__all__ = ["app", "main"]

for _group, _name in (
    (money.refund_app, "refund"), (accounts.ledger_app, "ledger"),
    (accounts.wallet_app, "wallet"), (money.split_app, "split"), (money.escrow_app, "escrow"),
    (money.settlement_app, "settlement"), (money.payout_app, "payout"),
    (routing.routing_app, "routing"), (payments.payment_app, "payment"),
    (store_codes.store_code_app, "store-codes"), (recon.recon_app, "recon"),
    (risk.risk_app, "risk"),
):  # fmt: skip
    app.add_typer(_group, name=_name)
assert admin and demo and risk_reviews  # their commands register themselves on import


def main() -> None:
    app()
