"""The channel registry: which adapters exist, what they offer, what they refuse up front.

Every built-in channel package registers its adapter factory here on import (``@register``);
registering also makes each of its channel operations log one ``channel_call`` line per HTTP
request (:func:`paymux.kit.logging.channel_operation`). Domain code asks this module — never a
channel name — which channels take a method, which would refuse a request before any call, and
which payment-code rules exist.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from paymux.channels.base import (
    AdapterFactory,
    BarcodeCapable,
    ChannelAdapter,
    PaymentCodeRule,
    PaymentRequest,
    RequestProblem,
    SplitCapable,
    StatementCapable,
    TransferCapable,
    supports_step_up,
)
from paymux.kit.logging import channel_operation

_REGISTRY: dict[str, AdapterFactory] = {}
_LOADED: list[bool] = []


def register(factory: AdapterFactory) -> AdapterFactory:
    """Class decorator: make an adapter available under its ``name``; its operations log
    their channel calls (:func:`_observed`)."""
    for operation in _OPERATIONS:
        method = getattr(factory, operation, None)
        if inspect.iscoroutinefunction(method) and not hasattr(method, "__paymux_observed__"):
            setattr(factory, operation, _observed(operation, method))
    _REGISTRY[factory.name] = factory
    return factory


_CONTRACTS = (ChannelAdapter, TransferCapable, SplitCapable, StatementCapable, BarcodeCapable)
_OPERATIONS = frozenset(
    name
    for contract in _CONTRACTS
    for name, member in vars(contract).items()
    if inspect.iscoroutinefunction(member)
)
"""The adapter methods that talk to a channel: every coroutine of the contracts above."""

_REF_FIELDS = ("out_refund_no", "out_order_no", "out_biz_no", "out_trade_no")


def _observed(operation: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """``method`` running inside :func:`~paymux.kit.logging.channel_operation`, so each HTTP
    request it makes logs one line naming the channel, the operation and our number of the
    object (the first argument, or the request's own number)."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with channel_operation(getattr(self, "name", None), operation, _reference(args)):
            return await method(self, *args, **kwargs)

    wrapper.__paymux_observed__ = True  # type: ignore[attr-defined]
    return wrapper


def _reference(args: tuple[Any, ...]) -> str | None:
    first = args[0] if args else None
    if isinstance(first, str):
        return first
    if isinstance(first, dt.date):
        return first.isoformat()
    found = (getattr(first, name, None) for name in _REF_FIELDS)
    return next((value for value in found if isinstance(value, str)), None)


def builtin_channel_names() -> list[str]:
    """The built-in channel packages: every ``paymux.channels.<name>`` package (each has an
    ``adapter`` module that registers the channel and a ``sandbox`` module), sorted."""
    import pkgutil

    import paymux.channels

    return sorted(m.name for m in pkgutil.iter_modules(paymux.channels.__path__) if m.ispkg)


def load_builtin_channels() -> None:
    """Import every built-in channel package so it registers itself."""
    import importlib

    if _LOADED:
        return
    for name in builtin_channel_names():
        importlib.import_module(f"paymux.channels.{name}.adapter")
    _LOADED.append(True)


def get(name: str) -> AdapterFactory:
    load_builtin_channels()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown channel {name!r}") from None


def all_channels() -> dict[str, AdapterFactory]:
    load_builtin_channels()
    return dict(_REGISTRY)


def channels_for_method(method: str) -> list[str]:
    return [name for name, f in all_channels().items() if method in f.methods]


def all_methods() -> set[str]:
    return {m for f in all_channels().values() for m in f.methods}


def can_step_up(channel: str) -> bool:
    """Whether ``channel`` authenticates the payer strongly when a create asks it to
    (``CreatePayment.step_up``: 3-D Secure). Risk's ``challenge`` uses it where it exists."""
    return supports_step_up(get(channel))


def step_up_channels(method: str) -> list[str]:
    """The channels offering ``method`` that can step up (see :func:`can_step_up`)."""
    return [name for name in channels_for_method(method) if can_step_up(name)]


def request_problems(channel: str, request: PaymentRequest) -> list[RequestProblem]:
    """What ``channel`` would refuse about ``request`` before doing anything: a method or
    currency it does not take, a ``customer`` field it needs, and its own ``check_request``."""
    factory = get(channel)
    method, currency = request.method, request.currency
    if method not in factory.methods:
        return [RequestProblem("unsupported_method", f"{channel} has no {method}.", "method")]
    if currency not in factory.currencies:
        message = f"{channel} does not take {currency} for {method}."
        return [RequestProblem("unsupported_currency", message, "currency")]
    needed = getattr(factory, "required_customer", {}).get(method, ())
    problems = [
        RequestProblem("customer_required", f"{method} needs customer.{name}.", f"customer.{name}")
        for name in needed
        if not request.customer.get(name)
    ]
    check = getattr(factory, "check_request", None)
    if check is not None:
        problems.extend(check(request))
    return problems


def refusals(request: PaymentRequest) -> dict[str, RequestProblem]:
    """Per channel offering ``request.method`` that would refuse it, its first problem.
    A request every such channel refuses can never succeed."""
    found = {name: request_problems(name, request) for name in channels_for_method(request.method)}
    return {name: problems[0] for name, problems in found.items() if problems}


# ---------------------------------------------------------------- payment-code detection
def payment_code_rules(method: str | None = None) -> list[PaymentCodeRule]:
    """Every payment-code rule the channels declare (for ``method`` only, when given)."""
    rules = [
        rule
        for factory in all_channels().values()
        for rule in getattr(factory, "payment_codes", ())
    ]
    return [r for r in rules if method is None or r.method == method]


def barcode_methods() -> set[str]:
    """The methods that charge a payment code (``wechat_barcode``, ``alipay_barcode``…)."""
    return {rule.method for rule in payment_code_rules()}


def methods_for_payment_code(code: str) -> list[str]:
    """The payment-code methods whose rules take ``code``, sorted (empty: no wallet's)."""
    return sorted({rule.method for rule in payment_code_rules() if rule.matches(code)})
