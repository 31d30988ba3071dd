"""Property test of the merchant API: whatever JSON a client sends, the answer is a 2xx or a
4xx with the error object — never a 5xx — and a rejected request creates nothing."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paymux.kit.openapi import api_routes
from paymux.payments.models import Payment
from paymux.webhooks.models import WebhookEndpoint
from tests.conftest import MERCHANT_SITE, Stack, Tenant
from tests.fixtures.servers import serve_here

scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                  max_size=4),
    max_leaves=8,
)  # fmt: skip
tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-|*.", min_size=1, max_size=40)

payment_bodies = st.fixed_dictionaries(
    {},
    optional={
        "amount": st.integers(min_value=-5, max_value=10**16) | json_values,
        "currency": st.sampled_from(["CNY", "USD", "JPY", "cny", "XXX", ""]) | json_values,
        "method": st.sampled_from(
            ["wechat_native", "alipay_qr", "wechat_jsapi", "wechat_h5", "alipay_page", "card", ""]
        )
        | json_values,  # fmt: skip
        "out_trade_no": tokens | json_values,
        "subject": st.text(max_size=200) | json_values,
        "description": st.text(max_size=50) | json_values,
        "expires_in": st.integers(min_value=-10, max_value=10**7) | json_values,
        "customer": st.dictionaries(
            st.sampled_from(["openid", "buyer_id", "x"]), st.text(max_size=200)
        )
        | json_values,  # fmt: skip
        "metadata": st.dictionaries(st.text(max_size=45), st.text(max_size=20), max_size=3)
        | json_values,
        "return_url": st.sampled_from(["https://shop.example/ok", "javascript:x", ""])
        | json_values,
        "client_ip": st.sampled_from(["203.0.113.9", "::1", "not-an-ip"]) | json_values,
        "channel": st.sampled_from(["wechatpay", "alipay", "chn_nope"]) | json_values,
        "extra_field": json_values,
    },
)
plausible_payments = st.fixed_dictionaries(
    {
        "amount": st.integers(min_value=1, max_value=10**9),
        "currency": st.just("CNY"),
        "method": st.sampled_from(["wechat_native", "alipay_qr", "alipay_page", "wechat_h5"]),
        "out_trade_no": tokens.map(lambda t: t[:32]),
        "subject": st.text(min_size=1, max_size=60).filter(str.strip),
    },
    optional={"client_ip": st.just("203.0.113.9"), "expires_in": st.integers(60, 86400)},
)
endpoint_bodies = st.fixed_dictionaries(
    {},
    optional={
        "url": st.sampled_from(["http://merchant.test/fuzz", "ftp://x", "http://", ""])
        | json_values,
        "events": st.lists(st.sampled_from(["*", "payment.succeeded", "nope"]), max_size=3)
        | json_values,
        "description": st.text(max_size=600) | json_values,
    },
)

FUZZ = settings(
    max_examples=120, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip


def _check(status: int, body: Any) -> None:
    assert status < 500, body
    if status >= 400:
        assert set(body["error"]) == {"type", "code", "message", "param"}, body


async def _count(stack: Stack, model: Any, app_id: str) -> int:
    async with stack.runtime.db.read() as session:
        return int(await session.scalar(
            sa.select(sa.func.count()).select_from(model).where(model.app_id == app_id)
        ) or 0)  # fmt: skip


def _on(loop: asyncio.AbstractEventLoop) -> Any:
    """Run a coroutine on the test's event loop from hypothesis's thread; return its result."""
    return lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result()


async def test_payment_creation_never_fails_server_side(stack: Stack, tenant: Tenant) -> None:
    call = _on(asyncio.get_running_loop())
    created = 0

    @FUZZ
    @given(body=payment_bodies | plausible_payments)
    def one(body: dict[str, Any]) -> None:
        nonlocal created
        r = call(stack.client.post("/v1/payments", json=body, headers=tenant.headers))
        _check(r.status_code, r.json())
        created += r.status_code == 201

    await asyncio.to_thread(one)  # hypothesis drives from a thread; requests run on this loop
    assert created > 0  # the valid region was reached too
    assert await _count(stack, Payment, tenant.app_id) == created


async def test_endpoint_creation_and_queries_never_fail_server_side(
    stack: Stack, tenant: Tenant
) -> None:
    call = _on(asyncio.get_running_loop())
    created = 0

    @FUZZ
    @given(body=endpoint_bodies, query=st.dictionaries(
        st.sampled_from(["limit", "starting_after", "status", "type", "created_gte",
                         "out_trade_no"]), st.text(max_size=30), max_size=3))  # fmt: skip
    def one(body: dict[str, Any], query: dict[str, str]) -> None:
        nonlocal created
        r = call(stack.client.post("/v1/webhook_endpoints", json=body, headers=tenant.headers))
        _check(r.status_code, r.json())
        created += r.status_code == 201
        for path in ("/v1/payments", "/v1/events", "/v1/payments/pay_x", "/v1/events/evt_x"):
            q = call(stack.client.get(path, params=query, headers=tenant.headers))
            _check(q.status_code, q.json())

    await asyncio.to_thread(one)
    assert await _count(stack, WebhookEndpoint, tenant.app_id) == created


async def test_nul_characters_are_refused_before_the_database(stack: Stack, tenant: Tenant) -> None:
    """Found by the property test above: PostgreSQL cannot store NUL, so it must never get one."""
    body = {"amount": 100, "currency": "CNY", "method": "alipay_qr", "out_trade_no": "nul-1",
            "subject": "a\x00b"}  # fmt: skip
    r = await stack.client.post("/v1/payments", json=body, headers=tenant.headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_invalid"
    r = await stack.client.get("/v1/payments?starting_after=%00", headers=tenant.headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_invalid"
    r = await stack.client.get("/v1/events/evt%00x", headers=tenant.headers)
    assert r.status_code == 400
    assert await _count(stack, Payment, tenant.app_id) == 0
    ok = await stack.client.post(
        "/v1/payments", json={**body, "subject": "a\\u0000b (escaped text)"},
        headers=tenant.headers,
    )  # fmt: skip
    assert ok.status_code == 201, ok.text


# ---------------------------------------------------------------- every route, over a real socket
# Each route of the app gets requests built from its declaration: a plausible body (its example,
# or the required fields of its schema) with one thing broken — a wrong type, a non-URL where a
# URL goes, a huge number, NUL, odd unicode, a missing field, an unknown one — or a body that is
# not JSON at all, with junk or real ids in the path and junk in the query and headers. They go
# over one keep-alive HTTP connection to uvicorn on loopback: after every answer the next request
# must be served on the same connection (a 500 used to make the server drop it).

EVIL = st.sampled_from([
    None, True, -1, 0, 2**63, 10**30, -(10**30), 1.5, 1e308, "", " ", "\x00", "a\x00b",
    "💥 ü 中文 \u202e", "not a url", "http://[::1", "javascript:alert(1)", "ftp://x",
    "http://" + "a" * 3000, "x" * 5000, [], {}, ["x"], {"a": {"b": 1}},
]) | json_values  # fmt: skip
EVIL_TEXT = st.sampled_from([
    "", "-1", "0", "1e309", "9" * 40, "💥", "x" * 500, "2026-13-45T99:00", "true", "a\x00",
    "null", "[]", "pay_x",
]) | st.text(max_size=20)  # fmt: skip
PATH_JUNK = st.sampled_from(["x", "pay_0", "a" * 300, "💥", "-1", "1e309", " ", "%", "null"])
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300
).map(str.strip)
BAD_AUTH = [{}, {"Authorization": "Bearer sk_test_x"}, {"Authorization": "Basic Zm9vOmJhcg=="}]
ROUTE_FUZZ = settings(FUZZ, max_examples=int(os.environ.get("PAYMUX_FUZZ_EXAMPLES", "8")))


def _resolve(node: Any, doc: dict[str, Any]) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = doc["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _sample(node: Any, doc: dict[str, Any]) -> Any:
    """A plausible instance of a JSON schema: its example, else the required fields."""
    node = _resolve(node, doc)
    for key in ("example", "const", "default"):
        if key in node:
            return copy.deepcopy(node[key])
    if node.get("enum"):
        return node["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in node.get(key, []) if _resolve(o, doc).get("type") != "null"]
        if options:
            return _sample(options[0], doc)
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        props = node.get("properties", {})
        return {k: _sample(props[k], doc) for k in node.get("required", []) if k in props}
    if kind == "array":
        return [_sample(node.get("items", {}), doc) for _ in range(node.get("minItems", 0))]
    if kind in ("integer", "number"):
        return max(1, int(node.get("minimum", node.get("exclusiveMinimum", 0) + 1)))
    if kind == "boolean":
        return True
    return "fuzz" if node.get("format") != "date-time" else "2026-01-01T00:00:00Z"


@st.composite
def _broken(draw: st.DrawFn, baseline: Any, fields: list[str]) -> Any:
    """The baseline with one thing wrong (or, sometimes, nothing: the valid path runs too)."""
    body = copy.deepcopy(baseline)
    kind = draw(st.sampled_from(["field", "field", "field", "nested", "drop", "extra", "none",
                                 "whole"]))  # fmt: skip
    if not isinstance(body, dict) or kind == "whole":
        return draw(json_values | EVIL)
    if kind == "field" and fields:
        body[draw(st.sampled_from(fields))] = draw(EVIL)
    elif kind == "nested":
        nested = [k for k, v in body.items() if isinstance(v, dict)]
        if nested:
            body[draw(st.sampled_from(nested))][draw(st.text(max_size=8))] = draw(EVIL)
    elif kind == "drop" and body:
        del body[draw(st.sampled_from(sorted(body)))]
    elif kind == "extra":
        body[draw(st.text(max_size=10))] = draw(EVIL)
    return body


@dataclass
class _Target:
    method: str
    path: str
    operation: dict[str, Any]
    operator: bool

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


def _targets(stack: Stack) -> list[_Target]:
    doc = stack.app.openapi()
    found = []
    for route in api_routes(stack.app):
        for method in sorted(route.methods or ()):
            if method in ("HEAD", "OPTIONS"):
                continue
            op = doc["paths"].get(route.path_format, {}).get(method.lower())
            if op is None:  # not in the document (notify, cashier): path params only
                names = re.findall(r"{(\w+)", route.path_format)
                op = {"parameters": [{"name": n, "in": "path"} for n in names]}
            operator = route.path_format.startswith("/v1/operator")
            found.append(_Target(method, route.path_format, op, operator))
    return found


@st.composite
def _request(draw: st.DrawFn, target: _Target, doc: dict[str, Any], ids: dict[str, str],
             auth: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    path = target.path
    query: dict[str, str] = {}
    headers: dict[str, str] = {}
    for param in target.operation.get("parameters", []):
        name = param["name"]
        if param["in"] == "path":
            value = draw(st.sampled_from([ids[name]]) | PATH_JUNK) if name in ids else draw(
                PATH_JUNK)  # fmt: skip
            path = path.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
        elif param["in"] == "query" and draw(st.booleans()):
            query[name] = draw(EVIL_TEXT)
        elif param["in"] == "header" and draw(st.booleans()):
            headers[name] = draw(HEADER_TEXT)
    headers.update(draw(st.sampled_from([auth] * 6 + BAD_AUTH)))
    request: dict[str, Any] = {"method": target.method, "url": path, "params": query,
                               "headers": headers}  # fmt: skip
    body_schema = (target.operation.get("requestBody", {}).get("content", {})
                   .get("application/json", {}))  # fmt: skip
    if target.method in ("GET", "DELETE") and not body_schema:
        return request
    baseline: Any = {}
    fields: list[str] = []
    if body_schema:
        baseline = body_schema.get("example") or _sample(body_schema["schema"], doc)
        fields = sorted(_resolve(body_schema["schema"], doc).get("properties", {}))
    body = draw(_broken(baseline, fields))
    if isinstance(body, dict):  # fresh merchant numbers, so the valid path is not always a 409
        body = {k: f"fz{draw(st.integers(0, 10**9))}" if v == "fuzz" or k.startswith("out_")
                else v for k, v in body.items()}  # fmt: skip
    encoding = draw(st.sampled_from(["json"] * 6 + ["broken", "text", "form"]))
    if encoding == "json":
        request["json"] = body
    elif encoding == "broken":
        request["content"] = b'{"amount": 1,'
        headers["Content-Type"] = "application/json"
    elif encoding == "text":
        request["content"] = json.dumps(body).encode()
        headers["Content-Type"] = "text/plain"
    else:
        request["content"] = b"amount=1&method=x"
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return request


def _local_port(response: httpx.Response) -> int:
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


async def _known_ids(stack: Stack, tenant: Tenant) -> dict[str, str]:
    """Real ids for path parameters, so requests get past the lookup to what follows it."""
    ids = {"merchant_id": tenant.merchant_id, "app_id": tenant.app_id, "channel": "wechatpay",
           "account_id": tenant.accounts["wechatpay"]}  # fmt: skip
    made = {
        "wallet_id": ("/v1/wallets", {"reference": "fuzz-wallet"}),
        "payment_id": ("/v1/payments", {"amount": 100, "currency": "CNY", "method": "alipay_qr",
                                        "out_trade_no": "fuzz-ids", "subject": "ids"}),
        "endpoint_id": ("/v1/webhook_endpoints", {"url": f"{MERCHANT_SITE}/fuzz"}),
    }  # fmt: skip
    for name, (path, body) in made.items():
        r = await stack.client.post(path, json=body, headers=tenant.headers)
        if r.status_code == 201:
            ids[name] = r.json()["id"]
    return ids


async def test_every_route_answers_bad_input_with_a_4xx_error_and_keeps_the_connection(
    stack: Stack, tenant: Tenant
) -> None:
    call = _on(asyncio.get_running_loop())
    doc = stack.app.openapi()
    ids = await _known_ids(stack, tenant)
    targets = _targets(stack)
    assert len(targets) > 50 and {t.path for t in targets} >= {
        "/v1/wallets/{wallet_id}/top_ups", "/notify/{channel}/{account_id}", "/pay/{payment_id}"
    }  # fmt: skip
    operator = {"Authorization": f"Bearer {stack.runtime.settings.operator_token}"}
    seen: dict[str, set[int]] = {}
    async with serve_here(stack.app) as base, httpx.AsyncClient(
        base_url=base, timeout=30, limits=httpx.Limits(max_connections=1)
    ) as client:  # fmt: skip
        port = _local_port(await client.get("/healthz"))

        def fuzz(target: _Target) -> None:
            auth = operator if target.operator else tenant.headers

            @ROUTE_FUZZ
            @given(request=_request(target, doc, ids, auth))
            def one(request: dict[str, Any]) -> None:
                r = call(client.request(**request))
                seen.setdefault(target.label, set()).add(r.status_code)
                assert r.status_code < 500, (target.label, request, r.text)
                if r.status_code >= 400 and not target.path.startswith("/notify/"):
                    assert r.headers["content-type"] == "application/json", r.text
                    assert set(r.json()["error"]) == {"type", "code", "message", "param"}, r.text
                after = call(client.get("/healthz"))
                assert after.status_code == 200
                assert _local_port(after) == port, ("connection dropped", request, r.headers)

            one()

        for target in targets:
            await asyncio.to_thread(fuzz, target)
    assert len(seen) == len(targets)
    assert any(400 in codes for codes in seen.values())
    assert any(code < 300 for codes in seen.values() for code in codes)  # valid paths ran too


async def test_a_top_up_with_a_return_url_that_is_not_a_url_is_a_400(
    stack: Stack, tenant: Tenant
) -> None:
    """Issue 10 item 5: it was a 500 (the top-up built a PaymentCreate that refused the URL)."""
    ids = await _known_ids(stack, tenant)
    before = await _count(stack, Payment, tenant.app_id)
    body = {"amount": 100, "method": "alipay_qr", "out_trade_no": "top-1",
            "return_url": "not a url"}  # fmt: skip
    r = await stack.client.post(f"/v1/wallets/{ids['wallet_id']}/top_ups", json=body,
                                headers=tenant.headers)  # fmt: skip
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "return_url"
    assert await _count(stack, Payment, tenant.app_id) == before
    ok = await stack.client.post(
        f"/v1/wallets/{ids['wallet_id']}/top_ups",
        json={**body, "return_url": "https://shop.example/done"}, headers=tenant.headers,
    )  # fmt: skip
    assert ok.status_code == 201, ok.text


async def test_errors_raised_inside_endpoints_are_error_objects_and_keep_the_connection(
    stack: Stack,
) -> None:
    """A model built inside an endpoint or service, a ValueError from parsing, and a bug."""
    from fastapi import APIRouter
    from pydantic import BaseModel, HttpUrl

    from paymux.app import create_app

    class Inner(BaseModel):
        url: HttpUrl

    router = APIRouter()

    @router.get("/boom/model")
    async def model() -> None:
        Inner(url="not a url")  # type: ignore[arg-type]

    @router.get("/boom/value")
    async def value() -> None:
        urllib.parse.urlsplit("http://[::1")

    @router.get("/boom/bug")
    async def bug() -> None:
        raise RuntimeError("a bug, with a secret in it: sk_test_secret")

    app = create_app(stack.runtime.settings, runtime=stack.runtime, extra_routers=[router])
    async with serve_here(app) as base, httpx.AsyncClient(base_url=base) as client:
        port = _local_port(await client.get("/healthz"))
        r = await client.get("/boom/model")
        assert r.status_code == 400 and r.json()["error"]["param"] == "url", r.text
        r = await client.get("/boom/value")
        assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_invalid"
        r = await client.get("/boom/bug")
        assert r.status_code == 500
        assert r.json()["error"]["type"] == "api_error"
        assert "secret" not in r.text
        after = await client.get("/healthz")
        assert after.status_code == 200 and _local_port(after) == port


async def test_a_body_that_is_not_json_is_a_400_saying_so(stack: Stack, tenant: Tenant) -> None:
    body = b'{"amount": 100, "currency": "CNY"'
    for content, ctype in ((body, "application/json"), (b'{"amount": 1}', "text/plain"),
                           (b"amount=1", "application/x-www-form-urlencoded")):  # fmt: skip
        r = await stack.client.post("/v1/payments", content=content,
                                    headers={**tenant.headers, "Content-Type": ctype})  # fmt: skip
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] is None
        assert "Content-Type: application/json" in r.json()["error"]["message"]
