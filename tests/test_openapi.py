"""The OpenAPI document describes the API as it behaves (issue 10 item 10).

The document's shape is checked directly; its truth by schemathesis against the gateway with its
sandboxes, served on loopback from the test's event loop: every operation, data generated from
the document alone, each answer checked for a documented status, a documented content type, a
body matching the documented schema, and no 5xx — then stateful runs that follow the document's
links (create a payment → retrieve it, close it …). Written from the document, not per endpoint,
so it keeps holding as endpoints change.
"""

from __future__ import annotations

import asyncio
import copy
import os
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from paymux.app import create_app
from paymux.channels import registry
from paymux.config import Environment, Settings
from paymux.kit.money import EXPONENTS
from paymux.payments.schemas import PaymentCreate
from paymux.refunds.schemas import RefundCreate
from paymux.webhooks.schemas import EndpointCreate
from tests.conftest import Stack, Tenant, make_tenant
from tests.fixtures.servers import serve_here

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES_PER_OPERATION = int(os.environ.get("PAYMUX_CONFORMANCE_EXAMPLES", "6"))
STATEFUL_RUNS = int(os.environ.get("PAYMUX_CONFORMANCE_STATEFUL", "40"))


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    app = create_app(Settings(env=Environment.dev, database_url="sqlite+aiosqlite://"))
    return app.openapi()


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


# ---------------------------------------------------------------- the document itself
def test_errors_are_the_error_object_and_never_422(doc: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    error = doc["components"]["schemas"]["Error"]["properties"]["error"]
    assert set(error["required"]) == {"type", "code", "message", "param"}
    for method, path, op in _operations(doc):
        assert "422" not in op["responses"], (method, path)
        for status, response in op["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
        if path.startswith("/v1/"):
            assert "400" in op["responses"], (method, path)


def test_security_schemes_and_per_operation_security(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "http", "scheme": "bearer"}
    assert schemes["operatorToken"]["scheme"] == "bearer"
    for method, path, op in _operations(doc):
        want = "operatorToken" if path.startswith("/v1/operator") else "apiKey"
        assert op["security"] == [{want: []}], (method, path)
        assert "401" in op["responses"], (method, path)
    # routes for channels and customers are unauthenticated and not part of the merchant API
    assert not any(p.startswith(("/notify", "/sandbox", "/pay/")) for p in doc["paths"])


def test_error_statuses_follow_what_an_operation_does(doc: dict[str, Any]) -> None:
    for method, path, op in _operations(doc):
        responses = op["responses"]
        if "{" in path:
            assert "404" in responses, (method, path)
        headers = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
        if "Idempotency-Key" in headers:
            assert "409" in responses, (method, path)
            param = next(p for p in op["parameters"] if p["name"] == "Idempotency-Key")
            assert "same key" in param["description"]
    create = doc["paths"]["/v1/payments"]["post"]["responses"]
    assert {"201", "400", "401", "402", "409", "503"} <= set(create)


def test_method_and_currency_are_enums_of_what_the_api_accepts(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    methods = set(schemas["PaymentCreate"]["properties"]["method"]["enum"])
    assert methods == registry.all_methods() | {"barcode", "wallet"}
    assert {"wechat_native", "alipay_qr", "card", "paypal"} <= methods
    assert set(schemas["PaymentCreate"]["properties"]["currency"]["enum"]) == set(EXPONENTS)
    assert set(schemas["TopUpCreate"]["properties"]["method"]["enum"]) == methods
    balance = doc["paths"]["/v1/balance"]["get"]["parameters"]
    assert set(next(p for p in balance if p["name"] == "currency")["schema"]["enum"]) == set(
        EXPONENTS
    )


@pytest.mark.parametrize(
    ("path", "model"),
    [("/v1/payments", PaymentCreate), ("/v1/refunds", RefundCreate),
     ("/v1/webhook_endpoints", EndpointCreate)],
)  # fmt: skip
def test_request_examples_are_valid_requests(doc: dict[str, Any], path: str, model: Any) -> None:
    example = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"]
    model.model_validate(example)


def test_creates_link_to_what_can_be_done_with_the_object(doc: dict[str, Any]) -> None:
    links = doc["paths"]["/v1/payments"]["post"]["responses"]["201"]["links"]
    ids = {link["operationId"] for link in links.values()}
    get = doc["paths"]["/v1/payments/{payment_id}"]["get"]["operationId"]
    close = doc["paths"]["/v1/payments/{payment_id}/close"]["post"]["operationId"]
    assert {get, close} <= ids
    assert all(link["parameters"] == {"payment_id": "$response.body#/id"}
               for link in links.values())  # fmt: skip


def test_the_document_is_valid_openapi(doc: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_dict(copy.deepcopy(doc))
    schema.validate()
    assert sum(1 for result in schema.get_all_operations() if result.ok()) == len(_operations(doc))


# ---------------------------------------------------------------- conformance against the app
def _schema(stack: Stack) -> Any:
    """schemathesis changes the dict it loads (the links, among others): it gets a copy, never
    the app's cached document, which later tests read."""
    return schemathesis.openapi.from_dict(copy.deepcopy(stack.app.openapi()))


def _checks() -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [not_a_server_error, status_code_conformance, content_type_conformance,
            response_schema_conformance]  # fmt: skip


def _auth(stack: Stack, tenant: Tenant, path: str) -> dict[str, str]:
    if path.startswith("/v1/operator"):
        return {"Authorization": f"Bearer {stack.runtime.settings.operator_token}"}
    return tenant.headers


CONFORMANCE = settings(
    max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip


@pytest.mark.parametrize("mode", ["positive", "negative"])
async def test_every_operation_conforms_to_the_document(
    stack: Stack, tenant: Tenant, mode: str
) -> None:
    """Positive: data valid by the document. Negative: data the document forbids; either way
    every answer is a documented status with a documented body, never a 5xx.

    Not checked: that every forbidden value is refused. pydantic's lax mode takes ``false`` or
    ``"1"`` for an integer and a repeated query parameter is taken once, so the API is slightly
    more lenient than the document says."""
    schema = _schema(stack)
    generation = schemathesis.GenerationMode(mode)
    checks = _checks()
    failures: list[str] = []
    async with serve_here(stack.app) as base_url:

        def run(operation: Any) -> None:
            headers = _auth(stack, tenant, operation.path)

            @CONFORMANCE
            @given(case=operation.as_strategy(generation_mode=generation))
            def one(case: Any) -> None:
                case.call_and_validate(base_url=base_url, headers=headers, checks=checks,
                                       timeout=30)  # fmt: skip

            try:
                one()
            except (Exception, BaseExceptionGroup) as exc:  # report every operation's failure
                failures.append(f"{operation.method.upper()} {operation.path}: {exc}")

        operations = [result.ok() for result in schema.get_all_operations()]
        for operation in operations:
            await asyncio.to_thread(run, operation)
    assert len(operations) > 50
    assert not failures, "\n\n".join(failures)


async def test_a_generator_creates_payments_from_the_document_alone(stack: Stack) -> None:
    """What schemathesis could not do before (bare-string method and currency, no URL rule).

    The app has every sandbox channel, so any documented method can be routed; merchant numbers
    and idempotency keys are made unique per call (uniqueness is no schema's business)."""
    tenant = await make_tenant(stack, channels=tuple(stack.sandboxes))
    schema = _schema(stack)
    create = schema["/v1/payments"]["POST"]
    statuses: list[int] = []
    async with serve_here(stack.app) as base_url:

        @settings(CONFORMANCE, max_examples=30)
        @given(case=create.as_strategy())
        def one(case: Any) -> None:
            case.headers.pop("Idempotency-Key", None)
            if isinstance(case.body, dict):
                case.body["out_trade_no"] = f"gen-{len(statuses)}"
            response = case.call_and_validate(base_url=base_url, headers=tenant.headers,
                                              checks=_checks(), timeout=30)  # fmt: skip
            statuses.append(response.status_code)

        await asyncio.to_thread(one)
    assert statuses.count(201) >= 3, statuses


UNIQUE_PER_REQUEST = frozenset({
    "out_trade_no", "out_refund_no", "out_transfer_no", "out_payout_no", "out_request_no",
    "reference", "name",
})  # fmt: skip
"""Body fields the server keeps unique per app (``name``: of a risk list): a repeat is a 409
however valid the request."""


async def test_stateful_runs_follow_the_links(stack: Stack) -> None:
    """Create → use the object: the links make the generated calls reach real objects."""
    tenant = await make_tenant(stack, channels=tuple(stack.sandboxes))
    schema = _schema(stack)
    schema.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE])
    checks = _checks()
    reached: set[tuple[str, int]] = set()
    async with serve_here(stack.app) as base_url:
        base_machine = schema.as_state_machine()

        class Machine(base_machine):  # type: ignore[misc, valid-type]
            def get_call_kwargs(self, case: Any) -> dict[str, Any]:
                return {"base_url": base_url, "headers": _auth(stack, tenant, case.path),
                        "timeout": 30}  # fmt: skip

            def before_call(self, case: Any) -> None:
                # The server remembers what earlier runs sent: a generated Idempotency-Key or
                # request number (out_trade_no, wallet reference…) repeated by a later run would
                # be a 409 there and not here, leaving a bundle empty in one run only (hypothesis
                # then reports the machine as flaky). Each call gets fresh ones.
                if case.headers and "Idempotency-Key" in case.headers:
                    case.headers["Idempotency-Key"] = f"st-{uuid.uuid4()}"
                if isinstance(case.body, dict):
                    for name in UNIQUE_PER_REQUEST & case.body.keys():
                        if isinstance(case.body[name], str):
                            case.body[name] = f"st{uuid.uuid4().hex[:20]}"

            def after_call(self, response: Any, case: Any) -> None:
                reached.add((f"{case.method} {case.path}", response.status_code))

            def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
                case.validate_response(response, checks=checks, transport_kwargs=kwargs)

        run_settings = settings(
            max_examples=STATEFUL_RUNS, deadline=None, derandomize=True, database=None,
            stateful_step_count=6, suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        await asyncio.to_thread(Machine.run, settings=run_settings)
    # objects were made and then used through a link (a 200 on an operation with an id); which
    # ones depends on what hypothesis draws — test_every_read_link_reaches_the_created_object
    # follows each link deterministically
    assert any(code == 201 for _, code in reached), reached
    assert any("{" in op and code == 200 for op, code in reached), reached


@pytest.mark.parametrize("path", ["/v1/payments", "/v1/wallets"])
async def test_every_read_link_reaches_the_created_object(stack: Stack, path: str) -> None:
    """The document's own example creates the object; each link to a read operation, resolved
    as the document says, answers 200 (with that object, where it answers one)."""
    tenant = await make_tenant(stack)
    doc = stack.app.openapi()
    by_id = {op["operationId"]: (m.upper(), p) for p, ops in doc["paths"].items()
             for m, op in ops.items()}  # fmt: skip
    create = doc["paths"][path]["post"]
    body = dict(create["requestBody"]["content"]["application/json"]["example"])
    for name in UNIQUE_PER_REQUEST & body.keys():
        body[name] = f"link-{uuid.uuid4().hex[:16]}"
    made = await stack.client.post(path, json=body, headers=tenant.headers)
    assert made.status_code == 201, made.text
    reads = 0
    for link in create["responses"]["201"]["links"].values():
        method, target = by_id[link["operationId"]]
        if method != "GET":
            continue
        url = target
        for param, expression in link["parameters"].items():
            field_name = expression.removeprefix("$response.body#/")
            assert field_name != expression, expression
            url = url.replace(f"{{{param}}}", made.json()[field_name])
        answer = await stack.client.get(url, headers=tenant.headers)
        assert answer.status_code == 200, (url, answer.text)
        if answer.json()["object"] != "list":  # a list link (a wallet's statement) may be empty
            assert answer.json()["id"] == made.json()["id"], (url, answer.text)
        reads += 1
    assert reads >= 1
