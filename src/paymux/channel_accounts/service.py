"""Channel accounts: validated, encrypted credentials; adapters built from them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts.models import ChannelAccount
from paymux.channel_accounts.repository import ChannelAccountRepository
from paymux.channels import base, registry
from paymux.kit.crypto import Vault
from paymux.kit.errors import InvalidRequest, NotFound
from paymux.kit.ids import new_id
from paymux.merchants.models import Mode
from paymux.merchants.repository import MerchantRepository


def _context(account_id: str) -> str:
    # Binds each ciphertext to its row: a credential blob copied to another row won't decrypt.
    return f"channel_account:{account_id}"


def _gateway_host(credentials: dict[str, Any]) -> str | None:
    gateway = credentials.get("gateway")
    return urlsplit(str(gateway)).hostname if gateway else None


def validate_credentials(
    factory: base.AdapterFactory, credentials: dict[str, Any], mode: Mode
) -> dict[str, Any]:
    """Check credentials against the channel's model and the test/live separation rule:
    a test-mode account may only reach a sandbox, a live one only the real channel."""
    try:
        model = factory.credentials_model.model_validate(credentials)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidRequest(
            "invalid_credentials",
            f"{factory.name} credentials: {first['msg']}",
            param=".".join(str(p) for p in first["loc"]),
        ) from None
    clean = model.model_dump(mode="json")
    host = _gateway_host(clean)
    livemode_of = getattr(factory, "livemode_of", None)
    declared = livemode_of(clean) if livemode_of is not None else None
    if mode is Mode.live and declared is False:
        raise InvalidRequest(
            "live_mode_requires_live_credentials",
            f"These are {factory.name} test credentials; a live account needs live ones.",
            param="credentials",
        )
    if mode is Mode.test and declared is True:
        raise InvalidRequest(
            "test_mode_requires_test_credentials",
            f"These are {factory.name} live credentials; a test account needs test ones.",
            param="credentials",
        )
    test_keys_at_channel = declared is False  # the channel's own test mode
    if (
        mode is Mode.test
        and not test_keys_at_channel
        and (host is None or host in factory.production_hosts)
    ):
        raise InvalidRequest(
            "test_mode_requires_sandbox",
            "A test-mode channel account must point 'gateway' at a sandbox, "
            "never the real channel.",
            param="credentials.gateway",
        )
    if mode is Mode.live and host is not None and host not in factory.production_hosts:
        # A live account never talks to anything but the channel itself.
        raise InvalidRequest(
            "live_mode_requires_channel",
            f"A live channel account must use {factory.name}'s own gateway.",
            param="credentials.gateway",
        )
    return clean


async def add_account(
    session: AsyncSession,
    vault: Vault,
    *,
    app_id: str,
    channel: str,
    mode: Mode,
    credentials: dict[str, Any],
    methods: Sequence[str] | None = None,
    currencies: Sequence[str] | None = None,
    fee_rate_bps: int = 0,
    priority: int = 100,
    enabled: bool = True,
    name: str = "",
) -> ChannelAccount:
    if await MerchantRepository(session).get_app(app_id) is None:
        raise NotFound("app", app_id)
    try:
        factory = registry.get(channel)
    except KeyError:
        raise InvalidRequest(
            "unknown_channel",
            f"Unknown channel {channel!r}; known: {', '.join(sorted(registry.all_channels()))}.",
            param="channel",
        ) from None
    offered = list(methods) if methods else sorted(factory.methods)
    unknown = sorted(set(offered) - factory.methods)
    if unknown:
        raise InvalidRequest(
            "unsupported_method",
            f"{channel} does not offer {', '.join(unknown)}; it offers "
            f"{', '.join(sorted(factory.methods))}.",
            param="methods",
        )
    curr = list(currencies) if currencies else sorted(factory.currencies)
    if not set(curr) <= factory.currencies:
        raise InvalidRequest(
            "unsupported_currency", f"{channel} does not take {curr}.", param="currencies"
        )
    if not 0 <= fee_rate_bps <= 10_000:
        raise InvalidRequest(
            "parameter_invalid", "fee_rate_bps must be 0..10000.", param="fee_rate_bps"
        )
    clean = validate_credentials(factory, credentials, mode)
    account_id = new_id("chn")
    account = ChannelAccount(
        id=account_id,
        app_id=app_id,
        channel=channel,
        mode=mode.value,
        name=name or channel,
        methods=offered,
        currencies=curr,
        credentials_enc=vault.encrypt_json(clean, context=_context(account_id)),
        fee_rate_bps=fee_rate_bps,
        priority=priority,
        enabled=enabled,
    )
    ChannelAccountRepository(session).add(account)
    await session.flush()
    return account


def notify_url(public_url: str, account: ChannelAccount) -> str:
    """Where the channel sends this account's notifications (``inbox/endpoints.py``)."""
    return f"{public_url.rstrip('/')}/notify/{account.channel}/{account.id}"


async def account_of(session: AsyncSession, account_id: str) -> ChannelAccount:
    """The account a payment attempt names: it exists (a foreign key), so no NotFound."""
    account = await ChannelAccountRepository(session).get(account_id)
    assert account is not None
    return account


def credentials_of(vault: Vault, account: ChannelAccount) -> dict[str, Any]:
    value: dict[str, Any] = vault.decrypt_json(
        account.credentials_enc, context=_context(account.id)
    )
    return value


_ADAPTERS: OrderedDict[tuple[str, str, int, int], base.ChannelAdapter] = OrderedDict()
_ADAPTER_CACHE_SIZE = 1024


def adapter_for(
    vault: Vault, account: ChannelAccount, http: httpx.AsyncClient
) -> base.ChannelAdapter:
    """The channel adapter of one account with its decrypted credentials.

    Building one parses and validates RSA keys (tens of milliseconds), so adapters are cached per
    process. The key includes the encrypted credentials, which change (fresh nonce) whenever the
    credentials do, so an updated account never gets a stale adapter.
    """
    key = (account.id, account.credentials_enc, id(vault), id(http))
    adapter = _ADAPTERS.get(key)
    if adapter is None:
        adapter = registry.get(account.channel)(credentials_of(vault, account), http)
        _ADAPTERS[key] = adapter
        if len(_ADAPTERS) > _ADAPTER_CACHE_SIZE:
            _ADAPTERS.popitem(last=False)
    else:
        _ADAPTERS.move_to_end(key)
    return adapter


async def update_account(
    session: AsyncSession,
    account_id: str,
    *,
    enabled: bool | None = None,
    priority: int | None = None,
    fee_rate_bps: int | None = None,
) -> ChannelAccount:
    account = await ChannelAccountRepository(session).get(account_id)
    if account is None:
        raise NotFound("channel account", account_id)
    if enabled is not None:
        account.enabled = enabled
    if priority is not None:
        account.priority = priority
    if fee_rate_bps is not None:
        account.fee_rate_bps = fee_rate_bps
    await session.flush()
    return account
