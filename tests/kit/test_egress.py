"""The egress guard: which addresses merchant-given URLs may reach, and that a guarded client
connects to exactly the address it checked (real sockets on 127.0.0.1, no DNS)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import ValidationError

from paymux.config import Environment, Settings
from paymux.kit.egress import EgressGuard, EgressRefused, EgressUnresolved, egress_client
from tests.fixtures.egress import RecordingServer, StaticResolver

REFUSED = [
    # (host as written in a URL, the reason named)
    ("127.0.0.1", "loopback"),
    ("127.9.9.9", "loopback"),
    ("::1", "loopback"),
    ("169.254.169.254", "link-local or metadata"),
    ("10.1.2.3", "private"),
    ("172.16.5.4", "private"),
    ("192.168.0.10", "private"),
    ("100.64.0.1", "shared address space (CGNAT)"),
    ("100.100.100.200", "shared address space (CGNAT)"),  # Alibaba Cloud metadata
    ("192.0.0.192", "IETF protocol assignment"),  # Oracle Cloud metadata
    ("224.0.0.1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"),
    ("2130706433", "loopback"),  # decimal IPv4
    ("0x7f.1", "loopback"),  # hex, short form
    ("0177.0.0.1", "loopback"),  # octal
    ("127.1", "loopback"),
    ("0xa9fea9fe", "link-local or metadata"),  # 169.254.169.254 in hex
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:a9fe:a9fe", "link-local or metadata"),
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
    ("64:ff9b::a9fe:a9fe", "link-local or metadata"),  # NAT64 of 169.254.169.254
    ("64:ff9b:1::1", "reserved"),  # local-use NAT64
    ("fc00::1", "private"),
    ("fd00:ec2::254", "private"),  # AWS metadata over IPv6 (ULA)
    ("fe80::1", "link-local or metadata"),
    ("ff02::1", "multicast"),
    ("::", "unspecified"),
    ("localhost", "a local or metadata host name"),
    ("api.localhost", "a local or metadata host name"),
    ("metadata.google.internal", "a local or metadata host name"),
    ("METADATA.google.internal.", "a local or metadata host name"),
]
PUBLIC = ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8",
          "2002:808:808::1", "64:ff9b::808:808"]  # fmt: skip


@pytest.mark.parametrize(("host", "reason"), REFUSED)
async def test_non_public_addresses_and_names_are_refused(host: str, reason: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        await EgressGuard(resolver=StaticResolver()).resolve(host, 80)
    assert refused.value.reason == reason


@pytest.mark.parametrize("host", PUBLIC)
async def test_public_addresses_pass(host: str) -> None:
    assert str(await EgressGuard(resolver=StaticResolver()).resolve(host, 443))


async def test_names_are_judged_by_every_address_they_resolve_to() -> None:
    resolver = StaticResolver()
    resolver.set("shop.example", "93.184.215.14")
    resolver.set("inside.example", "10.0.0.5")
    resolver.set("mixed.example", ["93.184.215.14", "127.0.0.1"])
    guard = EgressGuard(resolver=resolver)
    assert str(await guard.resolve("shop.example", 443)) == "93.184.215.14"
    for name, address in (("inside.example", "10.0.0.5"), ("mixed.example", "127.0.0.1")):
        with pytest.raises(EgressRefused, match=f"address {address} is not allowed"):
            await guard.resolve(name, 443)
    with pytest.raises(EgressUnresolved):
        await guard.resolve("nowhere.example", 443)


async def test_operator_allowed_ranges_and_only_those() -> None:
    guard = EgressGuard(["10.20.0.0/16", "fd00:1::/64"], resolver=StaticResolver())
    for allowed in ("10.20.3.4", "::ffff:10.20.3.4", "fd00:1::9"):
        assert await guard.resolve(allowed, 80)
    for refused in ("10.21.0.1", "127.0.0.1", "fd00:2::1", "169.254.169.254"):
        with pytest.raises(EgressRefused):
            await guard.resolve(refused, 80)


def test_allowed_ranges_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(env=Environment.test).egress_allow_nets == []
    monkeypatch.setenv("PAYMUX_EGRESS_ALLOW_NETS", "10.20.0.0/16, fd00:1::/64")
    nets = Settings(env=Environment.test).egress_allow_nets
    assert [str(n) for n in nets] == ["10.20.0.0/16", "fd00:1::/64"]
    monkeypatch.setenv("PAYMUX_EGRESS_ALLOW_NETS", "not-a-net")
    with pytest.raises(ValidationError):
        Settings(env=Environment.test)


# ------------------------------------------------------------------ real connections
@pytest.fixture
async def server() -> AsyncIterator[RecordingServer]:
    running = await RecordingServer().start()
    yield running
    await running.stop()


def client(guard: EgressGuard) -> httpx.AsyncClient:
    return egress_client(guard, timeout=httpx.Timeout(2.0))


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f.1", "127.1",
                                  "[::ffff:127.0.0.1]", "hook.example"])  # fmt: skip
async def test_refused_targets_are_never_connected_to(server: RecordingServer, host: str) -> None:
    resolver = StaticResolver()
    resolver.set("hook.example", "127.0.0.1")
    async with client(EgressGuard(resolver=resolver)) as http:
        with pytest.raises(EgressRefused, match=r"127\.0\.0\.1\)? is not allowed \(loopback\)"):
            await http.post(f"http://{host}:{server.port}/hook", content=b"{}")
    assert server.connections == 0


async def test_the_connection_goes_to_the_checked_address_with_the_name_kept(
    server: RecordingServer,
) -> None:
    resolver = StaticResolver()
    resolver.set("hook.example", "127.0.0.1")  # real DNS would never say so
    async with client(EgressGuard(["127.0.0.1/32"], resolver=resolver)) as http:
        r = await http.post(f"http://hook.example:{server.port}/hook", content=b"{}")
    assert r.status_code == 200 and server.connections == 1
    assert b"host: hook.example:" in server.requests[0].lower()
    assert resolver.asked == ["hook.example"]  # resolved once, by the guard


async def test_dns_rebinding_cannot_reach_loopback(server: RecordingServer) -> None:
    resolver = StaticResolver()
    resolver.set("rebind.example", "93.184.215.14", "127.0.0.1")  # public first, then loopback
    guard = EgressGuard(resolver=resolver)
    assert str(await guard.resolve("rebind.example", server.port)) == "93.184.215.14"
    async with client(guard) as http:
        with pytest.raises(EgressRefused, match="address 127.0.0.1 is not allowed"):
            await http.post(f"http://rebind.example:{server.port}/hook", content=b"{}")
    assert server.connections == 0


async def test_redirects_are_not_followed(server: RecordingServer) -> None:
    target = await RecordingServer().start()
    server.status, server.headers = 302, {"location": f"http://127.0.0.1:{target.port}/x"}
    try:
        async with client(EgressGuard(["127.0.0.0/8"], resolver=StaticResolver())) as http:
            r = await http.post(f"http://127.0.0.1:{server.port}/hook", content=b"{}")
        assert r.status_code == 302 and target.connections == 0
    finally:
        await target.stop()


async def test_environment_proxies_are_ignored(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{server.port}")
    resolver = StaticResolver()
    resolver.set("shop.example", "192.168.1.1")
    async with client(EgressGuard(resolver=resolver)) as http:
        with pytest.raises(EgressRefused):
            await http.post("http://shop.example/hook", content=b"{}")
    assert server.connections == 0
