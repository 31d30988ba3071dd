"""Rule sets through the API, on SQLite and PostgreSQL: every rule validated when the draft is
saved (a bad expression is a 400 naming the rule, an unknown list is refused), versions given
at publication, the version in force retired by the next, nothing published ever changed, and
each owner seeing only its own."""

from __future__ import annotations

from typing import Any

from tests.conftest import Stack, make_tenant
from tests.risk.test_lists import OPERATOR, new_list


async def platform_rules(stack: Stack) -> list[dict[str, Any]]:
    from tests.risk.test_decisions import platform_rules as kept

    return await kept(stack)


BIG_NEW = {"name": "big_new_customer", "event": "payment.create",
           "expression": "amount > 500000 && customer.is_new", "action": "review"}  # fmt: skip


async def draft(stack: Stack, headers: dict[str, str], rules: list[dict[str, Any]],
                **extra: Any) -> Any:  # fmt: skip
    base = "/v1/operator/risk" if "Paymux-Actor" in headers else "/v1/risk"
    return await stack.client.post(f"{base}/rule_sets", headers=headers,
                                   json={"rules": rules, **extra})  # fmt: skip


async def test_a_draft_is_validated_rule_by_rule_when_saved(stack: Stack) -> None:
    shop = await make_tenant(stack)
    cases = [
        ({"expression": "amount >"}, "rule_syntax"),
        ({"expression": "amount_total > 5"}, "rule_unknown_attribute"),
        ({"expression": "__import__('os')"}, "rule_unknown_function"),
        ({"expression": "amount + 1"}, "rule_not_boolean"),
        ({"expression": 'ip_region in list("nowhere")'}, "rule_unknown_list"),
    ]
    for change, code in cases:
        r = await draft(stack, shop.headers, [BIG_NEW, {**BIG_NEW, "name": "second", **change}])
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert (error["code"], error["param"]) == (code, "rules[1].expression"), error
    r = await draft(stack, shop.headers, [BIG_NEW, BIG_NEW])
    assert r.json()["error"]["code"] == "rule_name_repeated", r.text
    r = await draft(stack, shop.headers, [{**BIG_NEW, "event": "payment.shipped"}])
    assert r.status_code == 400, r.text
    r = await stack.client.get("/v1/risk/rule_sets", headers=shop.headers)
    assert r.json()["data"] == []  # nothing was saved


async def test_publishing_versions_and_retires_and_nothing_published_changes(
    stack: Stack,
) -> None:
    shop, other = await make_tenant(stack), await make_tenant(stack)
    await new_list(stack, shop.headers, "blocked_regions", "region")
    by_region = {"name": "blocked_region", "event": "payment.create", "action": "block",
                 "expression": 'ip_region in list("blocked_regions")'}  # fmt: skip
    scored = {"name": "velocity", "event": "payment.create",
              "expression": "count_payments_device_1h > 5", "action": "score", "score": 40,
              "mode": "shadow"}  # fmt: skip
    r = await draft(stack, shop.headers, [by_region, scored], note="first")
    assert r.status_code == 201, r.text
    first = r.json()
    assert (first["state"], first["version"]) == ("draft", None)
    rules = {x["name"]: x for x in first["rules"]}
    assert rules["blocked_region"]["on_error"] == "review"  # a block rule that errors: review
    assert rules["blocked_region"]["lists"] == ["blocked_regions"]
    assert rules["velocity"]["on_error"] == "ignore" and rules["velocity"]["score"] == 40
    assert rules["velocity"]["attributes"] == ["count_payments_device_1h"]
    r = await stack.client.post(f"/v1/risk/rule_sets/{first['id']}/publish", headers=shop.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["version"]) == ("published", 1)
    again = await stack.client.post(f"/v1/risk/rule_sets/{first['id']}/publish",
                                    headers=shop.headers)  # fmt: skip
    assert again.status_code == 409 and again.json()["error"]["code"] == "rule_set_not_draft"
    second = (await draft(stack, shop.headers, [BIG_NEW])).json()
    r = await stack.client.post(f"/v1/risk/rule_sets/{second['id']}/publish",
                                headers=shop.headers)  # fmt: skip
    assert r.json()["version"] == 2
    old = (await stack.client.get(f"/v1/risk/rule_sets/{first['id']}", headers=shop.headers)).json()
    assert old["state"] == "retired" and old["retired_at"] and old["rules"] == first["rules"]
    listed = (await stack.client.get("/v1/risk/rule_sets", headers=shop.headers)).json()["data"]
    assert [(x["version"], x["state"]) for x in listed] == [(2, "published"), (1, "retired")]
    # Another merchant sees none of it; the platform's versions are its own.
    r = await stack.client.get(f"/v1/risk/rule_sets/{first['id']}", headers=other.headers)
    assert r.status_code == 404, r.text
    r = await stack.client.post(f"/v1/risk/rule_sets/{second['id']}/publish",
                                headers=other.headers)  # fmt: skip
    assert r.status_code == 404, r.text
    # The platform's rules run for every tenant of this database: a harmless one, beside the
    # rules in force.
    mine = {
        "name": "t_huge_payout",
        "event": "payout.create",
        "action": "review",
        "expression": f'merchant_id == "{shop.merchant_id}" && amount > 99999999',
    }
    platform = await draft(stack, OPERATOR, [*await platform_rules(stack), mine],
                           livemode=False)  # fmt: skip
    assert platform.status_code == 201 and platform.json()["owner"] == "platform", platform.text
    r = await stack.client.post(f"/v1/operator/risk/rule_sets/{platform.json()['id']}/publish",
                                headers=OPERATOR)  # fmt: skip
    assert r.status_code == 200 and r.json()["published_by"] == "operator:rita", r.text
    # A merchant's rules cannot read a list the platform does not have nor the merchant made;
    # the platform's list is readable to a merchant's rules.
    await new_list(stack, OPERATOR, "sanctioned", "region", livemode=False)
    uses_platform = {**by_region, "expression": 'ip_region in list("sanctioned")'}
    assert (await draft(stack, other.headers, [uses_platform])).status_code == 201
