"""The egress guard: outbound requests to merchant-given URLs (webhooks, alert hooks) never reach
loopback, private, link-local, metadata or other non-public addresses unless an operator allowed
the range (``PAYMUX_EGRESS_ALLOW_NETS``).

One rule, :meth:`EgressGuard.resolve`, turns a host into the address to connect to: a literal
address (including the legacy forms ``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1`` that
``inet_aton`` and so many resolvers accept) or every address the resolver returns is checked —
one refused address refuses the host — and IPv6 forms that carry an IPv4 address (IPv4-mapped,
6to4, NAT64) are judged by the IPv4 address inside. :class:`EgressTransport` calls it for every
new connection and connects to exactly the address it checked, so a DNS answer that changes
between the check and the connect (rebinding) cannot move the request; the URL, the ``Host``
header, TLS SNI and certificate verification stay on the host name. Redirects are never
followed and environment proxies are ignored (a proxy would resolve the name itself).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]
"""``(host name, port) → its addresses``; injectable so tests need no DNS."""

METADATA_HOSTS = frozenset({
    "localhost", "metadata", "metadata.google.internal", "metadata.goog", "instance-data",
    "instance-data.ec2.internal", "metadata.azure.internal", "metadata.tencentyun.com",
    "metadata.platformequinix.com",
})  # fmt: skip
"""Names refused before any lookup (cloud instance metadata services and the local host)."""

REFUSED_NETS: tuple[tuple[str, IPNetwork], ...] = tuple(
    (reason, ipaddress.ip_network(net))
    for reason, net in (
        ("shared address space (CGNAT)", "100.64.0.0/10"),
        ("IETF protocol assignment", "192.0.0.0/24"),
        ("benchmarking", "198.18.0.0/15"),
        ("reserved or broadcast", "240.0.0.0/4"),
        ("local-use NAT64", "64:ff9b:1::/48"),
        ("unique local (ULA)", "fc00::/7"),
        ("site-local", "fec0::/10"),
        ("discard-only", "100::/64"),
        ("documentation", "2001:db8::/32"),
    )
)
"""Non-public ranges named explicitly, on top of what :mod:`ipaddress` knows."""

NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressError(httpx.TransportError):
    """The request was not sent (so callers that handle ``httpx.HTTPError`` handle this)."""


class EgressRefused(EgressError):
    """The target is not allowed; nothing was connected to."""

    def __init__(self, host: str, address: IPAddress | None, reason: str) -> None:
        self.host, self.address, self.reason = host, address, reason
        if address is None:
            super().__init__(f"host {host} is not allowed ({reason})")
            return
        inner = embedded_ipv4(address)
        shown = f"{address} ({inner})" if inner is not None else str(address)
        super().__init__(f"address {shown} is not allowed ({reason})")


class EgressUnresolved(EgressError):
    """The host name did not resolve (a later attempt may succeed)."""


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The operating system's resolver (``getaddrinfo``)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def literal_address(host: str) -> IPAddress | None:
    """The address a host spells literally, in any form a resolver would accept, else None."""
    host = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        pass
    # inet_aton forms: decimal (2130706433), hex (0x7f.1), octal (0177.0.0.1), short (127.1).
    if host[:1].isdigit() and set(host.lower()) <= set("0123456789abcdefx."):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, 6to4, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def non_public_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or None when it is one."""
    checks = (
        ("loopback", address.is_loopback),
        ("link-local or metadata", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for reason, hit in checks:
        if hit:
            return reason
    for reason, net in REFUSED_NETS:
        if address in net:
            return reason
    return None if address.is_global else "not globally routable"


def parse_nets(values: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


class EgressGuard:
    """The policy (public addresses plus the operator's ``allow`` ranges) and the resolver."""

    def __init__(
        self,
        allow: Iterable[str | IPNetwork] = (),
        *,
        resolver: Resolver = system_resolver,
        resolve_timeout: float = 5.0,
    ) -> None:
        self.allow = parse_nets(allow)
        self.resolver = resolver
        self.resolve_timeout = resolve_timeout

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be connected to, or None when it may."""
        inner = embedded_ipv4(address)
        if any(a in net for a in (address, inner) if a is not None for net in self.allow):
            return None
        return non_public_reason(inner if inner is not None else address)

    async def resolve(self, host: str, port: int) -> IPAddress:
        """The checked address to connect to for ``host``; raises :class:`EgressRefused` when
        the name or any address it resolves to is refused, :class:`EgressUnresolved` when it
        does not resolve."""
        name = host.strip("[]").rstrip(".").lower()
        if name in METADATA_HOSTS or name.endswith(".localhost"):
            raise EgressRefused(host, None, "a local or metadata host name")
        literal = literal_address(name)
        addresses = [literal] if literal is not None else await self._lookup(name, port)
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                raise EgressRefused(host, address, reason)
        return addresses[0]

    async def _lookup(self, name: str, port: int) -> Sequence[IPAddress]:
        try:
            found = await asyncio.wait_for(self.resolver(name, port), self.resolve_timeout)
        except TimeoutError:
            raise EgressUnresolved(f"resolving {name} timed out") from None
        except (OSError, UnicodeError) as exc:
            raise EgressUnresolved(f"cannot resolve {name}: {exc}") from None
        if not found:
            raise EgressUnresolved(f"cannot resolve {name}: no addresses")
        return found


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens every connection to the address the guard checked for the host."""

    def __init__(self, guard: EgressGuard) -> None:
        self.guard = guard
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            address = await self.guard.resolve(host, port)
        except EgressUnresolved as exc:
            raise httpcore.ConnectError(str(exc)) from None
        return await self.inner.connect_tcp(
            str(address), port, timeout=timeout, local_address=local_address,
            socket_options=socket_options,
        )  # fmt: skip

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused(path, None, "unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class EgressTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with every connection opened through the guard."""

    def __init__(self, guard: EgressGuard, *, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        super().__init__(limits=limits, trust_env=False)
        # The pool httpx built uses the default network backend; replace it with one that
        # resolves through the guard (httpx takes no backend argument of its own).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(guard),
        )


def egress_client(
    guard: EgressGuard, *, timeout: httpx.Timeout, limits: httpx.Limits | None = None
) -> httpx.AsyncClient:
    """A client for merchant-given URLs: guarded connections, no redirects, no env proxies."""
    return httpx.AsyncClient(
        transport=EgressTransport(guard, limits=limits), timeout=timeout,
        follow_redirects=False, trust_env=False,
    )  # fmt: skip
