"""Brand per app (display name, uploaded logo) and time zone per merchant: set through the
operator API, checked before anything changes, shown on the customer pages."""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
import uuid
from typing import Any

import pytest
import segno
from babel.dates import format_datetime

from paymux.merchants.models import App, Merchant
from tests.conftest import Stack, Tenant, make_tenant

OPERATOR = {"Authorization": "Bearer op_test_token_0123456789"}
BROWSER = {"accept": "text/html", "accept-language": "zh-CN"}


def _png() -> bytes:
    out = io.BytesIO()
    segno.make("paymux").save(out, kind="png", scale=2)
    return out.getvalue()


JPEG = (
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    + b"\x00" * 40
    + (b"\xff\xd9")
)
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _patch_app(stack: Stack, app_id: str, body: dict[str, Any]) -> Any:
    return await stack.client.patch(f"/v1/operator/apps/{app_id}", json=body, headers=OPERATOR)


async def _stored(stack: Stack, tenant: Tenant) -> tuple[str | None, str | None, str | None]:
    async with stack.runtime.db.read() as session:
        app = await session.get(App, tenant.app_id)
        assert app is not None
        return app.display_name, app.logo_type, app.logo_digest


async def _cashier(stack: Stack, tenant: Tenant) -> dict[str, Any]:
    body = {"amount": 1999, "currency": "CNY", "method": "wechat_native", "subject": "Lamp",
            "out_trade_no": "b" + uuid.uuid4().hex[:20]}  # fmt: skip
    r = await stack.client.post("/v1/payments", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


class TestBrand:
    @pytest.mark.parametrize(
        ("image", "content_type"),
        [(None, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp")],
    )
    async def test_logo_and_name_are_served_and_shown(
        self, stack: Stack, tenant: Tenant, image: bytes | None, content_type: str
    ) -> None:
        data = image or _png()
        r = await _patch_app(
            stack, tenant.app_id, {"display_name": "Blue Lamp Café", "logo": _b64(data)}
        )
        assert r.status_code == 200, r.text
        app = r.json()
        assert app["display_name"] == "Blue Lamp Café"
        path = "/" + app["logo_url"].split("/", 3)[3]
        assert re.fullmatch(rf"/brand/{tenant.app_id}/logo/[0-9a-f]{{64}}", path)
        logo = await stack.client.get(path)
        assert logo.status_code == 200 and logo.content == data
        assert logo.headers["content-type"] == content_type
        assert logo.headers["x-content-type-options"] == "nosniff"
        assert "immutable" in logo.headers["cache-control"]
        # the cashier's header shows the brand, the image from the gateway itself
        p = await _cashier(stack, tenant)
        page = await stack.client.get(f"/pay/{p['id']}", headers=BROWSER)
        assert f'<img class="logo" src="{path}" alt="Blue Lamp Café 的标志"' in page.text
        assert '<h1 class="merchant">Blue Lamp Café</h1>' in page.text
        assert "img-src 'self' data:" in page.headers["content-security-policy"]

    async def test_a_new_logo_gets_a_new_url_and_null_removes_it(
        self, stack: Stack, tenant: Tenant
    ) -> None:
        first = (await _patch_app(stack, tenant.app_id, {"logo": _b64(_png())})).json()
        second = (await _patch_app(stack, tenant.app_id, {"logo": _b64(JPEG)})).json()
        assert first["logo_url"] != second["logo_url"]
        old = "/" + first["logo_url"].split("/", 3)[3]
        assert (await stack.client.get(old)).status_code == 404
        cleared = await _patch_app(stack, tenant.app_id, {"logo": None, "display_name": None})
        assert cleared.json()["logo_url"] is None and cleared.json()["display_name"] is None
        new = "/" + second["logo_url"].split("/", 3)[3]
        assert (await stack.client.get(new)).status_code == 404
        p = await _cashier(stack, tenant)
        page = await stack.client.get(f"/pay/{p['id']}", headers=BROWSER)
        assert "<img" not in page.text and "Test shop · web" in page.text

    @pytest.mark.parametrize(
        ("logo", "code"),
        [
            (_b64(SVG), "logo_unsupported"),
            (_b64(b"<html><script>alert(1)</script></html>"), "logo_unsupported"),
            (_b64(b"GIF89a\x01\x00\x01\x00"), "logo_unsupported"),
            (_b64(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100), "logo_unsupported"),  # no IHDR
            (_b64(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 103_000), "logo_too_large"),
            ("not base64!", "logo_unsupported"),
        ],
    )
    async def test_a_bad_logo_is_refused_and_changes_nothing(
        self, stack: Stack, tenant: Tenant, logo: str, code: str
    ) -> None:
        before = await _stored(stack, tenant)
        r = await _patch_app(stack, tenant.app_id, {"display_name": "Changed", "logo": logo})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == code and r.json()["error"]["param"] == "logo"
        assert await _stored(stack, tenant) == before

    async def test_only_the_operator_sets_a_brand_and_logos_are_per_app(
        self, stack: Stack, tenant: Tenant
    ) -> None:
        r = await stack.client.patch(
            f"/v1/operator/apps/{tenant.app_id}", json={"display_name": "x"}, headers=tenant.headers
        )
        assert r.status_code == 401
        missing = await _patch_app(stack, "app_nope", {"display_name": "x"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "resource_missing"
        app = (await _patch_app(stack, tenant.app_id, {"logo": _b64(_png())})).json()
        digest = app["logo_url"].rsplit("/", 1)[1]
        other = await make_tenant(stack, channels=("wechatpay",))
        assert (await stack.client.get(f"/brand/{other.app_id}/logo/{digest}")).status_code == 404


def _pay_before(html: str) -> str:
    found = re.search(r"<time datetime=\"[^\"]+\">([^<]+)</time>", html)
    assert found is not None, html
    return found.group(1)


class TestTimezone:
    async def test_a_berlin_merchant_sees_berlin_time_on_the_zh_cn_cashier(
        self, stack: Stack, tenant: Tenant
    ) -> None:
        r = await stack.client.patch(
            f"/v1/operator/merchants/{tenant.merchant_id}", json={"timezone": "Europe/Berlin"},
            headers=OPERATOR,
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["timezone"] == "Europe/Berlin"
        p = await _cashier(stack, tenant)
        expires = dt.datetime.fromisoformat(p["expires_at"])
        page = await stack.client.get(f"/pay/{p['id']}", headers=BROWSER)
        shown = _pay_before(page.text)
        berlin = format_datetime(expires, format="medium", tzinfo=_zone("Europe/Berlin"),
                                 locale="zh_CN")  # fmt: skip
        shanghai = format_datetime(expires, format="medium", tzinfo=_zone("Asia/Shanghai"),
                                   locale="zh_CN")  # fmt: skip
        assert shown == berlin and shown != shanghai
        # back to the platform's zone
        r = await stack.client.patch(
            f"/v1/operator/merchants/{tenant.merchant_id}", json={"timezone": None},
            headers=OPERATOR,
        )  # fmt: skip
        assert r.json()["timezone"] == "Asia/Shanghai"
        page = await stack.client.get(f"/pay/{p['id']}", headers=BROWSER)
        assert _pay_before(page.text) == shanghai

    @pytest.mark.parametrize(
        "zone", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime", "", "europe/berlin"]
    )
    async def test_a_bad_zone_is_refused_and_changes_nothing(
        self, stack: Stack, tenant: Tenant, zone: str
    ) -> None:
        r = await stack.client.patch(
            f"/v1/operator/merchants/{tenant.merchant_id}",
            json={"timezone": zone, "name": "Renamed"}, headers=OPERATOR,
        )  # fmt: skip
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "timezone"
        async with stack.runtime.db.read() as session:
            merchant = await session.get(Merchant, tenant.merchant_id)
        assert merchant is not None and merchant.timezone is None and merchant.name == "Test shop"


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
