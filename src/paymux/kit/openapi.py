"""The OpenAPI document as the API behaves, and the docs pages that render it from local files.

FastAPI's generated document is post-processed here, once for every router, instead of
decorating each endpoint: security schemes from the auth dependencies, our ``Error`` object for
every error status (400 where FastAPI says 422), error statuses derived from what an operation
does, the ``Idempotency-Key`` header explained, ``method``/``currency`` as enums from the
channel registry and the exponent table, and request examples a generator can start from.

``/docs`` (Swagger UI) and ``/redoc`` load their scripts from ``/static/vendor``: copies of the
npm packages committed by ``scripts/vendor.py`` (no CDN at run time).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from paymux.kit import idempotency

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_PREFIX = "/static"
ERROR_REF = {"$ref": "#/components/schemas/Error"}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message", "param"],
            "properties": {
                "type": {
                    "type": "string",
                    "description": "invalid_request_error, authentication_error, "
                    "permission_error, idempotency_error, channel_error or api_error.",
                },
                "code": {"type": "string", "description": "Machine-readable, stable."},
                "message": {"type": "string", "description": "For people; may change."},
                "param": {
                    "anyOf": [{"type": "string"}, {"type": "null"}],
                    "description": "The offending field (dotted path), if one is to blame.",
                },
            },
        }
    },
}

ERROR_STATUSES = {
    "400": "Invalid request: a parameter, the body or a header is wrong; nothing was changed.",
    "401": "No valid API key (or operator token) in `Authorization: Bearer …`.",
    "403": "The key may not do this.",
    "404": "No such object (in the path, or named in the body) for this app and mode.",
    "409": "Conflict: the object's state does not allow this, a merchant number is taken, "
    "or the `Idempotency-Key` was used for a different request or is still in progress.",
    "402": "No channel could take the request (`channel_unavailable`).",
    "503": "A channel could not be reached or answered ambiguously; retry later with the same "
    "`Idempotency-Key` and body.",
    "500": "A bug on our side; it has been logged.",
}

SECURITY_SCHEMES: dict[str, Any] = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "sk_test_… / sk_live_…",
        "description": "The app's secret API key. A test key (`sk_test_…`) reaches only sandbox "
        "channels and test-mode objects; a live key (`sk_live_…`) only live ones.",
    },
    "operatorToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The platform operator's token (`PAYMUX_OPERATOR_TOKEN`), for "
        "`/v1/operator` only.",
    },
}

IDEMPOTENCY_DESCRIPTION = (
    "Makes a retry safe: the same key with the same body answers the stored response (no second "
    "effect); the same key with a different body is a 409 `idempotency_error`. Use a fresh "
    "random key (e.g. a UUID) per intended operation."
)
# Declared on exactly the operations the route mechanism runs through the key (every mutating
# one of an authenticated caller): see ``kit.idempotency.honours``.
IDEMPOTENCY_PARAMETER: dict[str, Any] = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "description": IDEMPOTENCY_DESCRIPTION,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}

# Operations that call a channel and can therefore answer 402 (no channel could take it) or 503
# (the channel's answer is unknown). Keyed by route path; a path missing here documents neither.
CHANNEL_OPERATIONS = {
    ("POST", "/v1/payments"),
    ("POST", "/v1/payments/{payment_id}/close"),
    ("POST", "/v1/payments/{payment_id}/escrow/confirm"),
    ("POST", "/v1/payments/{payment_id}/escrow/release"),
    ("POST", "/v1/refunds"),
    ("POST", "/v1/splits"),
    ("POST", "/v1/splits/{split_id}/execute"),
    ("POST", "/v1/wallets/{wallet_id}/top_ups"),
    ("POST", "/v1/payouts"),
}

EXAMPLES: dict[str, dict[str, Any]] = {
    "PaymentCreate": {
        "amount": 1999,
        "currency": "CNY",
        "method": "alipay_qr",
        "out_trade_no": "order-20260101-0001",
        "subject": "Coffee beans 1 kg",
        "metadata": {"order": "20260101-0001"},
    },
    "RefundCreate": {
        "payment": "pay_0123456789abcdef",
        "amount": 500,
        "out_refund_no": "refund-20260101-0001",
        "reason": "Damaged in transit",
    },
    "EndpointCreate": {
        "url": "https://shop.example.com/paymux/webhooks",
        "events": ["payment.succeeded", "refund.succeeded"],
        "description": "Order service",
    },
    "WalletCreate": {"owner_type": "user", "reference": "user-42", "currency": "CNY"},
}


def payment_methods() -> list[str]:
    """Every value ``method`` accepts: each channel's methods plus the aggregate choices."""
    from paymux.channels import registry
    from paymux.payments.barcode import BARCODE_METHOD
    from paymux.payments.service import WALLET_METHOD

    return sorted(registry.all_methods() | {BARCODE_METHOD, WALLET_METHOD})


def currencies() -> list[str]:
    from paymux.kit.money import EXPONENTS

    return sorted(EXPONENTS)


def api_routes(app: FastAPI) -> Iterator[Any]:
    """Every API route of the app as FastAPI sees it (``path_format``, ``methods``,
    ``dependant``, ``include_in_schema``), through included routers."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazily included routers: app.routes is flat
        yield from (r for r in app.routes if isinstance(r, APIRoute))
        return
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context


def _security(route: Any) -> list[dict[str, list[str]]]:
    from paymux.merchants.auth import authenticate, authenticate_operator

    calls = set(idempotency.dependency_calls(route.dependant))
    if authenticate_operator in calls:
        return [{"operatorToken": []}]
    if authenticate in calls:
        return [{"apiKey": []}]
    return []


def _error_responses(method: str, route: Any, operation: dict[str, Any]) -> list[str]:
    params = operation.get("parameters", [])
    statuses = ["400", "500"]
    if operation.get("security"):
        statuses.append("401")
    if any(p["in"] == "path" for p in params) or "requestBody" in operation:
        statuses.append("404")  # the object in the path, or one the body names (a payment…)
    if method != "GET":
        statuses.append("409")
    if (method, route.path_format) in CHANNEL_OPERATIONS:
        statuses += ["402", "503"]
    return statuses


def _fix_operation(method: str, route: Any, operation: dict[str, Any]) -> None:
    operation["security"] = _security(route)
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    for status in _error_responses(method, route, operation):
        responses.setdefault(status, {"description": ERROR_STATUSES[status]})
        responses[status]["content"] = {"application/json": {"schema": ERROR_REF}}
    if idempotency.honours(route):
        operation.setdefault("parameters", []).append(copy.deepcopy(IDEMPOTENCY_PARAMETER))
    for param in operation.get("parameters", []):
        if param["name"] == "currency" and param["in"] == "query":
            param["schema"] = {**param["schema"], "enum": currencies()}
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content:
        name = content.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1]
        if name in EXAMPLES:
            content["example"] = EXAMPLES[name]


def _request_schemas(doc: dict[str, Any]) -> set[str]:
    """Names of the component schemas a request body can contain (transitively)."""
    schemas = doc.get("components", {}).get("schemas", {})
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[-1]
                if name not in found:
                    found.add(name)
                    walk(schemas.get(name))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for ops in doc.get("paths", {}).values():
        for op in ops.values():
            walk(op.get("requestBody"))
    return found


def _strings(prop: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The string-typed branches of a property (itself, or in an ``anyOf`` with null)."""
    if prop.get("type") == "string":
        yield prop
    for branch in prop.get("anyOf", []):
        if branch.get("type") == "string":
            yield branch


def _constrain(doc: dict[str, Any]) -> None:
    """Say in request schemas what the validators check beyond the types: ``method`` and
    ``currency`` as enums, URLs as http(s), metadata keys of 1–40 characters. Responses keep
    plain strings, so an object made before a channel was removed still validates."""
    schemas = doc["components"]["schemas"]
    enums = {"method": payment_methods(), "currency": currencies()}
    for name in _request_schemas(doc):
        for field, prop in schemas.get(name, {}).get("properties", {}).items():
            for string in _strings(prop):
                if field in enums and "enum" not in string:
                    for key in ("pattern", "minLength", "maxLength"):
                        string.pop(key, None)
                    string["enum"] = enums[field]
                elif field == "url" or field.endswith("_url"):
                    string.setdefault("pattern", "^https?://")
            if field == "metadata" and prop.get("type") == "object":
                prop.setdefault("propertyNames", {"minLength": 1, "maxLength": 40})
                prop.setdefault("maxProperties", 50)


def _links(doc: dict[str, Any]) -> None:
    """OpenAPI links from each create (``POST <collection>`` → 201) to the operations on the
    object it made (``<collection>/{id}…``), fed by the created object's ``id``: a client or a
    stateful tester can follow create payment → retrieve / close it."""
    paths = doc["paths"]
    for collection, ops in paths.items():
        created = ops.get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        links: dict[str, Any] = {}
        for path, targets in paths.items():
            rest = path.removeprefix(collection + "/")
            if rest == path or not rest.startswith("{"):
                continue
            param = rest[1 : rest.index("}")]
            for op in targets.values():
                links[op["operationId"]] = {
                    "operationId": op["operationId"],
                    "parameters": {param: "$response.body#/id"},
                }
        if links:
            created["links"] = links


def build_openapi(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title, version=app.version, summary=app.summary,
        description=app.description, routes=app.routes,
    )  # fmt: skip
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = SECURITY_SCHEMES
    for route in api_routes(app):
        if not route.include_in_schema:
            continue
        ops = doc["paths"].get(route.path_format, {})
        for method in route.methods or ():
            if method.lower() in ops:
                _fix_operation(method, route, ops[method.lower()])
    _constrain(doc)
    _links(doc)
    return doc


def vendor_asset(package: str, file: str) -> str:
    """URL of ``file`` of the vendored npm ``package`` (whatever version is committed)."""
    found = sorted((STATIC_DIR / "vendor").glob(f"{package}-*/{file}"))
    if not found:
        raise RuntimeError(f"{package} is not vendored: run scripts/vendor.py")
    return f"{STATIC_PREFIX}/{found[-1].relative_to(STATIC_DIR).as_posix()}"


def install_openapi(app: FastAPI) -> None:
    """The document at ``app.openapi_url``; ``/docs`` and ``/redoc`` from local assets.

    Build the app with ``docs_url=None, redoc_url=None`` so FastAPI's CDN pages are not
    registered.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="static")
    spec_url = app.openapi_url or "/openapi.json"
    swagger_js = vendor_asset("swagger-ui-dist", "swagger-ui-bundle.js")
    swagger_css = vendor_asset("swagger-ui-dist", "swagger-ui.css")
    favicon = vendor_asset("swagger-ui-dist", "favicon-32x32.png")
    redoc_js = vendor_asset("redoc", "bundles/redoc.standalone.js")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=spec_url, title=f"{app.title} — API",
            swagger_js_url=swagger_js, swagger_css_url=swagger_css,
            swagger_favicon_url=favicon,
        )  # fmt: skip

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=spec_url, title=f"{app.title} — API reference",
            redoc_js_url=redoc_js, redoc_favicon_url=favicon, with_google_fonts=False,
        )  # fmt: skip
