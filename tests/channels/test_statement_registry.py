"""Every registered channel reads its day statement the one way reconciliation needs
(:class:`paymux.channels.base.StatementCapable`). Iterates the registry, so a new channel
without ``statement(day)`` fails here. (The per-channel tests check each sandbox's day lists
exactly the payments and refunds made that day: ``test_*_bill.py``, ``test_unionpay.py``,
``test_stripe.py``, ``test_paypal.py``.)"""

from __future__ import annotations

import datetime as dt
import inspect

import pytest

from paymux.channels import registry


@pytest.mark.parametrize("name", sorted(registry.all_channels()))
def test_channel_is_statement_capable(name: str) -> None:
    factory = registry.all_channels()[name]
    statement = getattr(factory, "statement", None)
    assert statement is not None and inspect.iscoroutinefunction(statement), name
    assert list(inspect.signature(statement).parameters) == ["self", "day"], name
    zone = getattr(factory, "statement_timezone", None)
    assert isinstance(zone, dt.tzinfo), name
    china = name in {"wechatpay", "alipay", "unionpay"}
    expected = dt.timedelta(hours=8) if china else dt.timedelta()
    assert zone.utcoffset(None) == expected, name
