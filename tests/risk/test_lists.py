"""Risk lists through the API, on SQLite and PostgreSQL: typed values in their normal form
(addresses and networks, hashed e-mails and phones, region codes), expiry, bulk import by CSV
that changes nothing when one line is bad, the platform's lists readable by every merchant and
changeable by none, another merchant's and the other mode's lists invisible."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.conftest import Stack, Tenant, make_tenant

OPERATOR = {"Authorization": "Bearer op_test_token_0123456789", "Paymux-Actor": "rita"}


async def new_list(stack: Stack, headers: dict[str, str], name: str, kind: str,
                   **extra: Any) -> dict[str, Any]:  # fmt: skip
    base = "/v1/operator/risk" if "Paymux-Actor" in headers else "/v1/risk"
    r = await stack.client.post(f"{base}/lists", headers=headers,
                                json={"name": name, "type": kind, **extra})  # fmt: skip
    assert r.status_code == 201, r.text
    return dict(r.json())


async def check(stack: Stack, tenant: Tenant, list_id: str, value: str) -> dict[str, Any]:
    r = await stack.client.get(f"/v1/risk/lists/{list_id}/check", headers=tenant.headers,
                               params={"value": value})  # fmt: skip
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_ip_lists_hold_addresses_and_networks(stack: Stack, clock: Any) -> None:
    tenant = await make_tenant(stack)
    ips = await new_list(stack, tenant.headers, "blocked_ips", "ip", description="abuse")
    assert (ips["owner"], ips["livemode"]) == (tenant.merchant_id, False)
    items = [{"value": "203.0.113.7", "reason": "chargebacks"},
             {"value": "198.51.100.0/24", "reason": "a proxy farm"},
             {"value": "2001:db8::1/128", "reason": "one v6 host"},
             {"value": "192.0.2.9", "reason": "for a day",
              "expires_at": "2026-01-01T00:00:00Z"}]  # fmt: skip
    r = await stack.client.post(f"/v1/risk/lists/{ips['id']}/items", headers=tenant.headers,
                                json={"items": items})  # fmt: skip
    assert r.json() | {} == {"object": "risk.list_items_added", "list_id": ips["id"],
                             "added": 4, "updated": 0}, r.text  # fmt: skip
    assert (await check(stack, tenant, ips["id"], "203.0.113.7"))["listed"]
    inside = await check(stack, tenant, ips["id"], "198.51.100.200")
    assert inside["listed"] and inside["item"]["value"] == "198.51.100.0/24"
    assert inside["item"]["network"] and inside["item"]["added_by"].startswith("merchant:")
    assert (await check(stack, tenant, ips["id"], "2001:DB8:0::1"))["listed"]  # normal form
    assert not (await check(stack, tenant, ips["id"], "198.51.101.1"))["listed"]
    assert not (await check(stack, tenant, ips["id"], "192.0.2.9"))["listed"]  # expired
    # Adding a value again replaces its reason; a bad value anywhere changes nothing.
    again = [{"value": "203.0.113.7", "reason": "confirmed fraud"},
             {"value": "not-an-ip", "reason": "typo"}]  # fmt: skip
    r = await stack.client.post(f"/v1/risk/lists/{ips['id']}/items", headers=tenant.headers,
                                json={"items": again})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["code"] == "list_value_invalid", r.text
    assert "items[1]" in r.json()["error"]["message"]
    item = (await check(stack, tenant, ips["id"], "203.0.113.7"))["item"]
    assert item["reason"] == "chargebacks"
    r = await stack.client.post(f"/v1/risk/lists/{ips['id']}/items", headers=tenant.headers,
                                json={"items": again[:1]})  # fmt: skip
    assert (r.json()["added"], r.json()["updated"]) == (0, 1)
    assert (await check(stack, tenant, ips["id"], "203.0.113.7"))["item"]["reason"] == (
        "confirmed fraud")  # fmt: skip
    r = await stack.client.delete(f"/v1/risk/lists/{ips['id']}/items", headers=tenant.headers,
                                  params={"value": "198.51.100.0/24"})  # fmt: skip
    assert r.status_code == 200 and r.json()["deleted"], r.text
    assert not (await check(stack, tenant, ips["id"], "198.51.100.200"))["listed"]
    r = await stack.client.delete(f"/v1/risk/lists/{ips['id']}/items", headers=tenant.headers,
                                  params={"value": "198.51.100.0/24"})  # fmt: skip
    assert r.status_code == 404, r.text


async def test_emails_and_phones_are_kept_only_as_hashes(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    emails = await new_list(stack, tenant.headers, "bad_emails", "email_hash")
    phones = await new_list(stack, tenant.headers, "bad_phones", "phone_hash")
    r = await stack.client.post(f"/v1/risk/lists/{emails['id']}/items", headers=tenant.headers,
                                json={"items": [{"value": " Fraud@Example.COM ",
                                                 "reason": "stolen cards"}]})  # fmt: skip
    assert r.status_code == 200, r.text
    digest = hashlib.sha256(b"fraud@example.com").hexdigest()
    r = await stack.client.get(f"/v1/risk/lists/{emails['id']}/items", headers=tenant.headers)
    (item,) = r.json()["data"]
    assert item["value"] == digest and "example" not in r.text
    assert (await check(stack, tenant, emails["id"], "fraud@example.com"))["listed"]
    assert (await check(stack, tenant, emails["id"], digest.upper()))["listed"]
    r = await stack.client.post(f"/v1/risk/lists/{phones['id']}/items", headers=tenant.headers,
                                json={"items": [{"value": "+86 138-0013-8000",
                                                 "reason": "刷单 ring"}]})  # fmt: skip
    assert r.status_code == 200, r.text
    assert (await check(stack, tenant, phones["id"], "+8613800138000"))["listed"]
    r = await stack.client.get(f"/v1/risk/lists/{phones['id']}/check", headers=tenant.headers,
                               params={"value": "call me"})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["param"] == "value", r.text


async def test_a_csv_import_adds_every_row_or_none(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    regions = await new_list(stack, tenant.headers, "blocked_regions", "region")
    url = f"/v1/risk/lists/{regions['id']}/items/import"
    csv_headers = {**tenant.headers, "Content-Type": "text/csv"}
    bad = "value,reason\nKP,sanctions\nnowhere,typo\nIR,sanctions\n"
    r = await stack.client.post(url, headers=csv_headers, content=bad.encode())
    assert r.status_code == 400 and "line 3" in r.json()["error"]["message"], r.text
    r = await stack.client.get(f"/v1/risk/lists/{regions['id']}/items", headers=tenant.headers)
    assert r.json()["data"] == []
    good = "\ufeffvalue,reason,expires_at\nkp,sanctions,\nCN-44,a campaign,2099-01-01T00:00:00Z\n"
    r = await stack.client.post(url, headers=csv_headers, content=good.encode())
    assert r.status_code == 200 and (r.json()["added"], r.json()["updated"]) == (2, 0), r.text
    assert (await check(stack, tenant, regions["id"], "KP"))["listed"]
    assert (await check(stack, tenant, regions["id"], "cn-44"))["listed"]
    for content, code in ((b"reason\nx\n", "csv_invalid"), (b"\xff\xfe\xfa", "csv_invalid"),
                          (b"value,reason\n", "csv_invalid")):  # fmt: skip
        r = await stack.client.post(url, headers=csv_headers, content=content)
        assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text


async def test_platform_lists_are_read_only_to_merchants_and_tenants_are_apart(
    stack: Stack,
) -> None:
    shop, other = await make_tenant(stack), await make_tenant(stack)
    platform = await new_list(stack, OPERATOR, "platform_devices", "device_id", livemode=False)
    assert platform["owner"] == "platform"
    r = await stack.client.post(f"/v1/operator/risk/lists/{platform['id']}/items",
                                headers=OPERATOR, json={"items": [
                                    {"value": "dev-42", "reason": "emulator farm"}]})  # fmt: skip
    assert r.status_code == 200, r.text
    # Every merchant's rules may read it ...
    assert (await check(stack, shop, platform["id"], "dev-42"))["listed"]
    listed = await stack.client.get("/v1/risk/lists", headers=shop.headers)
    assert platform["id"] in [x["id"] for x in listed.json()["data"]]
    # ... and no merchant may change it.
    r = await stack.client.post(f"/v1/risk/lists/{platform['id']}/items", headers=shop.headers,
                                json={"items": [{"value": "dev-7", "reason": "mine"}]})  # fmt: skip
    assert r.status_code == 404, r.text
    r = await stack.client.delete(f"/v1/risk/lists/{platform['id']}/items",
                                  headers=shop.headers, params={"value": "dev-42"})  # fmt: skip
    assert r.status_code == 404, r.text
    # A merchant's own list is nobody else's.
    mine = await new_list(stack, shop.headers, "vip_customers", "customer_id")
    for path in (f"/v1/risk/lists/{mine['id']}", f"/v1/risk/lists/{mine['id']}/items"):
        r = await stack.client.get(path, headers=other.headers)
        assert r.status_code == 404, r.text
    r = await stack.client.get(f"/v1/risk/lists/{mine['id']}/check", headers=other.headers,
                               params={"value": "cus_1"})  # fmt: skip
    assert r.status_code == 404, r.text
    # Names are unique per owner and mode, not across owners.
    r = await stack.client.post("/v1/risk/lists", headers=shop.headers,
                                json={"name": "vip_customers", "type": "customer_id"})  # fmt: skip
    assert r.status_code == 409 and r.json()["error"]["code"] == "list_exists", r.text
    assert (await new_list(stack, other.headers, "vip_customers", "customer_id"))["id"]
    # The operator names itself and the mode.
    r = await stack.client.post("/v1/operator/risk/lists", headers={
        "Authorization": OPERATOR["Authorization"]}, json={"name": "x", "type": "sku",
                                                           "livemode": False})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["code"] == "actor_required", r.text
    r = await stack.client.post("/v1/operator/risk/lists", headers=OPERATOR,
                                json={"name": "y", "type": "sku"})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["code"] == "livemode_required", r.text
    r = await stack.client.post("/v1/risk/lists", headers=shop.headers,
                                json={"name": "Bad Name", "type": "sku"})  # fmt: skip
    assert r.status_code == 400, r.text


async def test_rules_read_the_lists_that_count_now(stack: Stack, clock: Any) -> None:
    """What a compiled rule's ``list("name")`` sees: a merchant's own list before the
    platform's of the same name, the platform's otherwise, expired items gone."""
    from paymux.risk import rules
    from paymux.risk.service import lists_for

    shop = await make_tenant(stack)
    mine = await new_list(stack, shop.headers, "blocked_ips", "ip")
    await stack.client.post(f"/v1/risk/lists/{mine['id']}/items", headers=shop.headers, json={
        "items": [{"value": "198.51.100.0/24", "reason": "proxy farm"},
                  {"value": "192.0.2.1", "reason": "for an hour",
                   "expires_at": "2000-01-01T00:00:00Z"}]})  # fmt: skip
    platform = await new_list(stack, OPERATOR, "blocked_regions", "region", livemode=False)
    await stack.client.post(f"/v1/operator/risk/lists/{platform['id']}/items", headers=OPERATOR,
                            json={"items": [{"value": "KP", "reason": "sanctions"}]})  # fmt: skip
    by_ip = rules.compile_rule('cidr_match(ip, list("blocked_ips"))', "payment.create")
    by_region = rules.compile_rule('ip_region in list("blocked_regions")', "payment.create")
    names = by_ip.lists | by_region.lists
    async with stack.runtime.db.read() as session:
        seen = await lists_for(session, shop.merchant_id, False, names)
        platform_only = await lists_for(session, None, False, names)
        live = await lists_for(session, shop.merchant_id, True, names)
    assert seen == {"blocked_ips": frozenset({"198.51.100.0/24"}),
                    "blocked_regions": frozenset({"KP"})}  # fmt: skip
    assert platform_only["blocked_ips"] == frozenset() and live["blocked_regions"] == frozenset()
    hit = {"ip": "198.51.100.77", "ip_region": "KP"}
    miss = {"ip": "192.0.2.1", "ip_region": "CN"}
    for rule in (by_ip, by_region):
        assert rules.evaluate(rule, hit, seen).result is rules.RuleResult.hit
        assert rules.evaluate(rule, miss, seen).result is rules.RuleResult.no_hit
