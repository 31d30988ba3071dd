"""The ``paymux`` command: processes, database and tenant administration
(:mod:`paymux.cli.admin`), ledger and wallets (:mod:`paymux.cli.accounts`), and the other money
commands (:mod:`paymux.cli.money`)."""

from __future__ import annotations

from paymux.cli import accounts, admin, money, routing
from paymux.cli.common import app

__all__ = ["app", "main"]

for _group, _name in (
    (money.refund_app, "refund"), (accounts.ledger_app, "ledger"),
    (accounts.wallet_app, "wallet"), (money.split_app, "split"), (money.escrow_app, "escrow"),
    (money.settlement_app, "settlement"), (money.payout_app, "payout"),
    (routing.routing_app, "routing"),
):  # fmt: skip
    app.add_typer(_group, name=_name)
assert admin  # its commands register themselves on import


def main() -> None:
    app()
