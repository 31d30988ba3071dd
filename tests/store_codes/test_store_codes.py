"""Store codes over the in-process stack: the API (tenancy and mode scoping, QR images), and the
public amount page that turns a customer's amount into one cashier payment per form."""

from __future__ import annotations

import asyncio
import re
import struct
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from paymux.cashier import service as cashier
from tests.conftest import Stack, Tenant, make_tenant

WECHAT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 "
    "MicroMessenger/8.0.44"
)
DESKTOP = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120 "
    "Safari/537.36"
)


async def _create(stack: Stack, tenant: Tenant, **extra: Any) -> dict[str, Any]:
    body = {"name": "Nanjing Rd shop", "store_id": "store-001", **extra}
    r = await stack.client.post("/v1/store_codes", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


BROWSER = {"accept": "text/html,application/xhtml+xml"}
"""What a browser sends: the public pages answer it with HTML, an API client with JSON."""


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def _token(html: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


async def _open(stack: Stack, code: dict[str, Any]) -> str:
    page = await stack.client.get(_path(code["url"]), headers=BROWSER)
    assert page.status_code == 200, page.text
    return _token(page.text)


async def _submit(stack: Stack, code: dict[str, Any], token: str, amount: str | None) -> Any:
    data = {"token": token} if amount is None else {"token": token, "amount": amount}
    return await stack.client.post(_path(code["url"]), data=data, headers=BROWSER)


async def _payments(stack: Stack, tenant: Tenant) -> list[dict[str, Any]]:
    r = await stack.client.get("/v1/payments?limit=100", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def _live_headers(tenant: Tenant, stack: Stack) -> dict[str, str]:
    from paymux.merchants import service as merchant_service
    from paymux.merchants.models import Mode

    async with stack.runtime.db.transaction() as session:
        key = await merchant_service.issue_key(session, app_id=tenant.app_id, mode=Mode.live)
    return {"Authorization": f"Bearer {key.secret}"}


class TestApi:
    async def test_create_list_retrieve_deactivate(self, stack: Stack, tenant: Tenant) -> None:
        code = await _create(stack, tenant, amount=500)
        assert code["object"] == "store_code" and code["id"].startswith("sc_")
        assert code["active"] is True and code["amount"] == 500 and code["currency"] == "CNY"
        assert code["livemode"] is False
        assert re.fullmatch(r".*/s/[A-Za-z0-9_-]{32}", code["url"]), code["url"]
        assert code["id"] not in code["url"]
        got = await stack.client.get(f"/v1/store_codes/{code['id']}", headers=tenant.headers)
        assert got.json() == code
        listed = await stack.client.get("/v1/store_codes", headers=tenant.headers)
        assert [c["id"] for c in listed.json()["data"]] == [code["id"]]
        r = await stack.client.patch(
            f"/v1/store_codes/{code['id']}", json={"active": False}, headers=tenant.headers
        )
        assert r.status_code == 200 and r.json()["active"] is False

    async def test_other_tenants_and_the_other_mode_see_nothing(
        self, stack: Stack, tenant: Tenant
    ) -> None:
        code = await _create(stack, tenant)
        other = await make_tenant(stack)
        live = await _live_headers(tenant, stack)
        for headers in (other.headers, live):
            for path in ("", "/qr.svg", "/qr.png"):
                r = await stack.client.get(f"/v1/store_codes/{code['id']}{path}", headers=headers)
                assert r.status_code == 404, r.text
                assert r.json()["error"]["code"] == "resource_missing"
            r = await stack.client.patch(
                f"/v1/store_codes/{code['id']}", json={"active": False}, headers=headers
            )
            assert r.status_code == 404
            listed = await stack.client.get("/v1/store_codes", headers=headers)
            assert listed.json()["data"] == []
        again = await stack.client.get(f"/v1/store_codes/{code['id']}", headers=tenant.headers)
        assert again.json()["active"] is True

    @pytest.mark.parametrize(
        "body",
        [
            {"currency": "XYZ"},
            {"amount": 0},
            {"amount": -5},
            {"name": ""},
            {"store_id": "has space"},
            {"bogus": 1},
        ],
    )
    async def test_bad_input_is_4xx_and_creates_nothing(
        self, stack: Stack, tenant: Tenant, body: dict[str, Any]
    ) -> None:
        full = {"name": "shop", "store_id": "s1", **body}
        r = await stack.client.post("/v1/store_codes", json=full, headers=tenant.headers)
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["error"]["code"]
        listed = await stack.client.get("/v1/store_codes", headers=tenant.headers)
        assert listed.json()["data"] == []

    async def test_qr_images_are_printable(self, stack: Stack, tenant: Tenant) -> None:
        code = await _create(stack, tenant)
        svg = await stack.client.get(f"/v1/store_codes/{code['id']}/qr.svg", headers=tenant.headers)
        assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
        assert svg.text.startswith("<?xml") and "<svg" in svg.text
        png = await stack.client.get(f"/v1/store_codes/{code['id']}/qr.png", headers=tenant.headers)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png.content[16:24])
        # 10 px per module, a 4-module quiet zone each side, version ≥ 1 (21 modules)
        assert width == height and width % 10 == 0 and width >= (21 + 8) * 10
        import segno

        expected = segno.make(code["url"], error="q")
        assert width == (expected.symbol_size(scale=10, border=4)[0])
        assert expected.error == "Q"


class TestPage:
    async def test_amount_makes_a_cashier_payment_with_the_store(
        self, stack: Stack, tenant: Tenant
    ) -> None:
        code = await _create(stack, tenant)
        page = await stack.client.get(_path(code["url"]), headers=BROWSER)
        assert "Nanjing Rd shop" in page.text and "text/html" in page.headers["content-type"]
        csp = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'none'" in csp
        assert "form-action 'self'" in csp and "img-src 'self'" in csp
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["x-frame-options"] == "DENY"
        assert "<script" not in page.text and "<style" not in page.text
        assert 'lang="zh-CN"' in page.text and "付款金额" in page.text
        for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
            assert (await stack.client.get(src)).status_code == 200, src
        r = await _submit(stack, code, _token(page.text), "12.34")
        assert r.status_code == 303, r.text
        location = r.headers["location"]
        assert re.fullmatch(r"/pay/pay_\w+", location)
        payment_id = location.rsplit("/", 1)[1]
        payment = (
            await stack.client.get(f"/v1/payments/{payment_id}", headers=tenant.headers)
        ).json()
        assert payment["amount"] == 1234 and payment["currency"] == "CNY"
        assert payment["method"] == "cashier" and payment["status"] == "pending"
        assert payment["metadata"] == {"store_code": code["id"], "store_id": "store-001"}
        assert payment["out_trade_no"].startswith("sc-")
        assert payment["subject"] == "Nanjing Rd shop"
        assert payment["next_action"] == {"type": "redirect", "url": payment["cashier_url"]}

    async def test_the_payment_routes_by_wallet(self, stack: Stack, tenant: Tenant) -> None:
        """一码付: the same printed code serves any wallet: the payment it makes is a cashier
        payment, which the cashier routes by user agent."""
        code = await _create(stack, tenant)
        r = await _submit(stack, code, await _open(stack, code), "1")
        payment_id = r.headers["location"].rsplit("/", 1)[1]
        wechat = await cashier.view(stack.runtime, payment_id, user_agent=WECHAT)
        assert wechat is not None and [o.method for o in wechat.options] == ["wechat_jsapi"]
        desktop = await cashier.view(stack.runtime, payment_id, user_agent=DESKTOP)
        assert desktop is not None and len(desktop.options) >= 2

    async def test_a_double_submit_makes_one_payment(self, stack: Stack, tenant: Tenant) -> None:
        code = await _create(stack, tenant)
        token = await _open(stack, code)
        first = await _submit(stack, code, token, "5")
        second = await _submit(stack, code, token, "5")
        assert first.status_code == second.status_code == 303
        assert first.headers["location"] == second.headers["location"]
        token2 = await _open(stack, code)
        both = await asyncio.gather(
            _submit(stack, code, token2, "7"), _submit(stack, code, token2, "7")
        )
        assert {r.status_code for r in both} == {303}
        assert both[0].headers["location"] == both[1].headers["location"]
        assert sorted(p["amount"] for p in await _payments(stack, tenant)) == [500, 700]

    async def test_each_opening_is_a_new_payment(self, stack: Stack, tenant: Tenant) -> None:
        code = await _create(stack, tenant)
        a = await _submit(stack, code, await _open(stack, code), "5")
        b = await _submit(stack, code, await _open(stack, code), "5")
        assert a.headers["location"] != b.headers["location"]

    @pytest.mark.parametrize(
        "amount",
        ["", "   ", "0", "0.00", "-1", "1.234", "abc", "1e3", "１２", "99999999999999999", "1,00"],
    )
    async def test_a_bad_amount_is_a_friendly_error_and_no_payment(
        self, stack: Stack, tenant: Tenant, amount: str
    ) -> None:
        code = await _create(stack, tenant)
        r = await _submit(stack, code, await _open(stack, code), amount)
        assert r.status_code == 400
        assert "text/html" in r.headers["content-type"]
        assert 'role="alert"' in r.text and "Nanjing Rd shop" in r.text
        assert _token(r.text)  # the customer can correct and send again
        assert await _payments(stack, tenant) == []

    async def test_a_forged_token_makes_no_payment(self, stack: Stack, tenant: Tenant) -> None:
        code = await _create(stack, tenant)
        for token in ("", "short", "x" * 24 + "/", "../../" + "a" * 18):
            r = await _submit(stack, code, token, "5")
            assert r.status_code == 400, token
        assert await _payments(stack, tenant) == []

    async def test_a_fixed_amount_needs_no_input(self, stack: Stack, tenant: Tenant) -> None:
        code = await _create(stack, tenant, amount=1999)
        page = await stack.client.get(_path(code["url"]), headers=BROWSER)
        assert "19.99" in page.text and 'name="amount"' not in page.text
        r = await _submit(stack, code, _token(page.text), "0.01")  # ignored: the code's amount
        assert r.status_code == 303
        assert [p["amount"] for p in await _payments(stack, tenant)] == [1999]

    async def test_unknown_and_inactive_codes_are_a_friendly_404(
        self, stack: Stack, tenant: Tenant
    ) -> None:
        code = await _create(stack, tenant)
        token = await _open(stack, code)
        await stack.client.patch(
            f"/v1/store_codes/{code['id']}", json={"active": False}, headers=tenant.headers
        )
        for r in (
            await stack.client.get(_path(code["url"]), headers=BROWSER),
            await _submit(stack, code, token, "5"),
            await stack.client.get("/s/nope", headers=BROWSER),
            await stack.client.post(
                "/s/nope", data={"token": "a" * 24, "amount": "5"}, headers=BROWSER
            ),
            await stack.client.get(f"/s/{code['id']}", headers=BROWSER),
        ):
            assert r.status_code == 404
            assert "text/html" in r.headers["content-type"] and "收款码不可用" in r.text
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert await _payments(stack, tenant) == []
        await stack.client.patch(
            f"/v1/store_codes/{code['id']}", json={"active": True}, headers=tenant.headers
        )
        assert (await _submit(stack, code, token, "5")).status_code == 303


async def test_an_api_client_gets_a_machine_readable_404(stack: Stack) -> None:
    for r in (
        await stack.client.get("/s/nope"),
        await stack.client.post("/s/nope", data={"token": "a" * 24, "amount": "5"}),
    ):
        assert r.status_code == 404 and r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "resource_missing"


class TestBrandAndLanguage:
    async def test_the_page_shows_the_merchants_brand_in_either_language(
        self, stack: Stack, tenant: Tenant
    ) -> None:
        import base64
        import io

        import segno

        png = io.BytesIO()
        segno.make("logo").save(png, kind="png")
        r = await stack.client.patch(
            f"/v1/operator/apps/{tenant.app_id}",
            json={"display_name": "Lotus Tea", "logo": base64.b64encode(png.getvalue()).decode()},
            headers={"Authorization": "Bearer op_test_token_0123456789"},
        )
        assert r.status_code == 200, r.text
        logo = "/" + r.json()["logo_url"].split("/", 3)[3]
        code = await _create(stack, tenant, amount=1999)
        zh = await stack.client.get(_path(code["url"]), headers=BROWSER)
        assert '<h1 class="merchant">Lotus Tea</h1>' in zh.text
        assert f'<img class="logo" src="{logo}" alt="Lotus Tea 的标志"' in zh.text
        assert "¥19.99" in zh.text and "付款" in zh.text and "Nanjing Rd shop" in zh.text
        en = await stack.client.get(_path(code["url"]) + "?lang=en", headers=BROWSER)
        stack.client.cookies.clear()
        assert 'lang="en"' in en.text and "CN¥19.99" in en.text
        assert 'alt="Lotus Tea logo"' in en.text
        assert ">Pay</button>" in en.text and "Amount to pay" in en.text

    async def test_a_bad_amount_is_explained_in_english_too(
        self, stack: Stack, tenant: Tenant
    ) -> None:
        code = await _create(stack, tenant)
        token = await _open(stack, code)
        r = await stack.client.post(
            _path(code["url"]), data={"token": token, "amount": "1.234"},
            headers={**BROWSER, "accept-language": "en"},
        )  # fmt: skip
        assert r.status_code == 400 and 'aria-invalid="true"' in r.text
        assert "more decimal places than the currency allows" in r.text
        zh = await stack.client.post(
            _path(code["url"]), data={"token": token, "amount": "abc"}, headers=BROWSER
        )
        assert "金额须为数字" in zh.text


class TestStoreFilter:
    async def test_payments_of_one_store_code_scoped_to_the_app_and_mode(
        self, stack: Stack, tenant: Tenant
    ) -> None:
        first = await _create(stack, tenant)
        second = await _create(stack, tenant, store_id="store-002")
        made = {}
        for code, amounts in ((first, ("1", "2")), (second, ("3",))):
            for amount in amounts:
                r = await _submit(stack, code, await _open(stack, code), amount)
                made.setdefault(code["id"], []).append(r.headers["location"].rsplit("/", 1)[1])
        direct = await stack.client.post(
            "/v1/payments", headers=tenant.headers,
            json={"amount": 100, "currency": "CNY", "method": "cashier", "subject": "x",
                  "out_trade_no": "direct-1", "metadata": {"store": first["id"]}},
        )  # fmt: skip
        assert direct.status_code == 201, direct.text

        async def listed(headers: dict[str, str], store_code: str, **q: str) -> Any:
            r = await stack.client.get(
                "/v1/payments", params={"store_code": store_code, **q}, headers=headers
            )
            assert r.status_code == 200, r.text
            return r.json()

        got = await listed(tenant.headers, first["id"])
        assert [p["id"] for p in got["data"]] == made[first["id"]][::-1]  # newest first
        assert all(p["metadata"]["store_code"] == first["id"] for p in got["data"])
        page = await listed(tenant.headers, first["id"], limit="1")
        assert page["has_more"] is True and page["data"][0]["id"] == made[first["id"]][1]
        rest = await listed(tenant.headers, first["id"], starting_after=page["data"][0]["id"])
        assert [p["id"] for p in rest["data"]] == [made[first["id"]][0]]
        assert [p["id"] for p in (await listed(tenant.headers, second["id"]))["data"]] == made[
            second["id"]
        ]
        assert (await listed(tenant.headers, "sc_nope"))["data"] == []
        # another tenant, or this app's live key, sees none of them by the same id
        other = await make_tenant(stack, channels=("wechatpay",))
        assert (await listed(other.headers, first["id"]))["data"] == []
        assert (await listed(await _live_headers(tenant, stack), first["id"]))["data"] == []


async def test_the_store_filter_is_answered_from_its_index(stack: Stack, tenant: Tenant) -> None:
    """The list query's plan: the expression index (app, mode, metadata.store_code, id), not a
    walk over every payment of the app (PostgreSQL: with sequential scans discouraged, as its
    planner prefers them on a tiny test table)."""
    from paymux.payments.repository import PaymentRepository
    from paymux.payments.schemas import PaymentFilters

    captured: list[tuple[str, Any]] = []
    db = stack.runtime.db

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "FROM payments" in statement:
            captured.append((statement, params))

    engine = db.read_engine.sync_engine
    sa_event.listen(engine, "before_cursor_execute", capture)
    try:
        async with db.read() as session:
            await PaymentRepository(session).search(
                tenant.app_id, False, PaymentFilters(store_code="sc_x"), limit=20,
                starting_after=None,
            )  # fmt: skip
    finally:
        sa_event.remove(engine, "before_cursor_execute", capture)
    ((statement, params),) = captured
    async with db.read() as session:
        conn = await session.connection()
        if db.is_sqlite:
            rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
            plan = " ".join(str(r[-1]) for r in rows)
        else:
            await conn.exec_driver_sql("SET enable_seqscan = off")
            try:
                rows = await conn.exec_driver_sql("EXPLAIN " + statement, params)
                plan = " ".join(str(r[0]) for r in rows)
            finally:
                await conn.exec_driver_sql("RESET enable_seqscan")
    assert "ix_payments_store_code" in plan, plan
