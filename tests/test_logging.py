"""Logging: secrets never reach a log line (structlog, stdlib, uncaught exceptions, real
``paymux`` processes), and every channel call is one structured line without query strings or
bodies."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from paymux.config import Environment, Settings
from paymux.jobs.worker import Queued, Worker
from paymux.kit.logging import configure_logging, redact
from tests.conftest import Stack, Tenant, attempt_ids, make_tenant

PASSWORD = "s3cretPW"
BAD_DSN = f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:5432/paymux_nonexistent_db"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
SECRETS = {
    BAD_DSN: PASSWORD,
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc": "4eC39HqLyjWDarjtT1zdp7dc",
    "key sk_test_51Hx0abcDEF123": "51Hx0abcDEF123",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "Authorization: Bearer op_test_token_0123456789": "op_test_token_0123456789",
    "Basic cGF5cGFsOnNlY3JldA==": "cGF5cGFsOnNlY3JldA==",
    f"key={PEM!r}": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    PEM: "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    "host=db user=paymux password=hunter2x dbname=p": "hunter2x",
    "{'password': 'hunter3y'}": "hunter3y",
    "Settings(password='two words', env='test')": "two words",
    "POST https://merchant.example/hook?token=tok9Zq&x=1": "tok9Zq",
    'WECHATPAY2-SHA256-RSA2048 mchid="1900",signature="Zm9vYmFy+/="': "Zm9vYmFy",
}


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything logged while the test runs, as INFO text lines."""
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    yield stream
    configure_logging("WARNING")


@pytest.fixture
def captured_json() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("INFO", json=True, stream=stream)
    yield stream
    configure_logging("WARNING")


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


# ---------------------------------------------------------------- redaction
@pytest.mark.parametrize(("text", "secret"), list(SECRETS.items()))
def test_redact_removes_every_secret_shape(text: str, secret: str) -> None:
    scrubbed = redact(f"failed: {text} (retrying)")
    assert secret not in scrubbed
    assert "[redacted]" in scrubbed and scrubbed.startswith("failed: ")


def test_redact_keeps_ordinary_urls_and_text() -> None:
    text = "GET https://api.mch.weixin.qq.com:443/v3/pay/transactions/native took 12 ms"
    assert redact(text) == text


def test_settings_repr_masks_the_database_password() -> None:
    settings = Settings(env=Environment.test, database_url=BAD_DSN)
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)
    assert "postgres:[redacted]@127.0.0.1:5432/paymux_nonexistent_db" in repr(settings)
    assert settings.database_url == BAD_DSN  # what uses it still gets the real URL


def test_structlog_event_values_and_tracebacks_are_redacted(captured: io.StringIO) -> None:
    log = structlog.get_logger("paymux.test")
    try:
        raise RuntimeError(f"cannot connect to {BAD_DSN} with {PEM}")
    except RuntimeError:
        log.exception("connect_failed", url=BAD_DSN, nested={"headers": ["Bearer abc.def.ghi"]})
    log.info("issued", secret="whsec_abc", api_key="sk_test_x")
    out = captured.getvalue()
    for secret in (PASSWORD, "MIIEvQIB", "abc.def.ghi", "whsec_abc", "sk_test_x"):
        assert secret not in out
    assert "connect_failed" in out and "RuntimeError: cannot connect to" in out
    assert "paymux_nonexistent_db" in out and "issued" in out


def test_stdlib_loggers_go_through_the_same_redaction(captured_json: io.StringIO) -> None:
    try:
        raise ConnectionError(f"pool timeout for {BAD_DSN}")
    except ConnectionError:
        logging.getLogger("sqlalchemy.pool").error("checkout failed: %s", BAD_DSN, exc_info=True)
    logging.getLogger("uvicorn.error").warning("Authorization: Bearer sk_live_abcdef123456")
    lines = json_lines(captured_json)
    assert PASSWORD not in captured_json.getvalue()
    assert "sk_live_abcdef123456" not in captured_json.getvalue()
    assert [(line["logger"], line["level"]) for line in lines] == [
        ("sqlalchemy.pool", "error"), ("uvicorn.error", "warning"),
    ]  # fmt: skip
    assert "ConnectionError: pool timeout" in lines[0]["exception"]


def test_uncaught_exceptions_are_logged_redacted(captured_json: io.StringIO) -> None:
    try:
        raise ValueError(f"bad url {BAD_DSN}")
    except ValueError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    [line] = json_lines(captured_json)
    assert line["event"] == "uncaught_exception" and "ValueError: bad url" in line["exception"]
    assert PASSWORD not in captured_json.getvalue()


def test_uncaught_exceptions_in_threads_are_logged_redacted(captured: io.StringIO) -> None:
    def boom() -> None:
        raise ValueError(f"bad url {BAD_DSN}")

    thread = threading.Thread(target=boom, name="janitor-thread")
    thread.start()
    thread.join()
    out = captured.getvalue()
    assert "uncaught_exception" in out and "thread=janitor-thread" in out
    assert "ValueError: bad url" in out and PASSWORD not in out


def test_http_client_loggers_are_quiet_and_access_lines_lose_their_query(
    captured: io.StringIO,
) -> None:
    logging.getLogger("httpx").info('HTTP Request: POST http://x/gateway.do?sign=abc "200 OK"')
    logging.getLogger("httpcore.http11").debug("send_request_headers.started")
    logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:50312", "POST", "/v1/notify/alipay/acc_1?sign=SIGNATURE&notify_id=9", "1.1", 200,
    )  # fmt: skip
    out = captured.getvalue()
    assert "HTTP Request" not in out and "send_request_headers" not in out
    assert '"POST /v1/notify/alipay/acc_1 HTTP/1.1" 200' in out
    assert "SIGNATURE" not in out and "notify_id" not in out


async def test_a_failing_job_is_logged_without_the_secrets_in_its_message(
    stack: Stack, captured: io.StringIO
) -> None:
    async def failing(_rt: Any) -> int:
        raise RuntimeError(f"lost {BAD_DSN} while signing with sk_live_abc123def456")

    worker = Worker(stack.runtime, periodic=())
    worker.jobs = (Queued("boom", None, failing),)
    assert await worker.tick() == 0
    out = captured.getvalue()
    assert "job_failed" in out and "job=boom" in out and "RuntimeError: lost" in out
    assert PASSWORD not in out and "abc123def456" not in out


# ---------------------------------------------------------------- real processes
def _paymux(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PAYMUX_")}
    clean.update(PAYMUX_ENV="test", PAYMUX_DATABASE_URL=BAD_DSN, COLUMNS="200", **env)
    return subprocess.run(
        [sys.executable, "-c", "from paymux.cli import main; main()", *args],
        cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_worker_logs_failing_jobs_without_the_database_password(tmp_path: Path) -> None:
    done = _paymux(tmp_path, "worker", "--once")
    output = done.stdout + done.stderr
    assert PASSWORD not in output
    # the failure is logged: the tick's first read, which asks every job whether it is due
    assert "job_failed" in output and "job=due_check" in output
    assert "Traceback" in output and done.returncode != 0


def test_worker_json_logs_are_json_lines_without_the_password(tmp_path: Path) -> None:
    done = _paymux(tmp_path, "worker", "--once", PAYMUX_LOG_JSON="1")
    assert PASSWORD not in done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    failed = [line for line in lines if line["event"] == "job_failed"]
    assert {line["job"] for line in failed} >= {"due_check"}
    assert all(line["level"] == "error" and line["exception"] for line in failed)


def test_a_cli_command_failing_on_the_database_logs_no_password(tmp_path: Path) -> None:
    done = _paymux(tmp_path, "merchant", "list")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert PASSWORD not in output
    assert "uncaught_exception" in output and "Traceback" in output
    assert "│" not in output  # no rich traceback panel (they print local variables)


# ---------------------------------------------------------------- channel calls
async def test_one_line_per_channel_call_without_query_or_body(
    stack: Stack, captured_json: io.StringIO
) -> None:
    tenant: Tenant = await make_tenant(stack, channels=("wechatpay", "alipay"))
    answered: list[httpx.Response] = []

    async def record(response: httpx.Response) -> None:
        answered.append(response)

    client = stack.runtime.channel_http
    client.event_hooks["response"].append(record)
    subject = f"Logline-{uuid.uuid4().hex[:8]}"
    try:
        for method in ("wechat_native", "alipay_qr"):
            out_trade_no = uuid.uuid4().hex[:20]
            created = await stack.client.post(
                "/v1/payments",
                json={"amount": 1999, "currency": "CNY", "method": method,
                      "out_trade_no": out_trade_no, "subject": subject},
                headers={**tenant.headers, "Idempotency-Key": out_trade_no},
            )  # fmt: skip
            assert created.status_code == 201, created.text
            payment = created.json()
            closed = await stack.client.post(
                f"/v1/payments/{payment['id']}/close", headers=tenant.headers
            )
            assert closed.status_code == 200, closed.text
            [attempt] = await attempt_ids(stack, payment["id"])
            calls = [line for line in json_lines(captured_json) if line["event"] == "channel_call"]
            mine = [line for line in calls if line["ref"] == attempt]
            assert [line["operation"] for line in mine][0] == "create_payment"
            assert "close_payment" in {line["operation"] for line in mine}
    finally:
        client.event_hooks["response"].remove(record)

    lines = json_lines(captured_json)
    calls = [line for line in lines if line["event"] == "channel_call"]
    assert len(calls) == len(answered) >= 4  # exactly one line per call to a channel
    for line, response in zip(calls, answered, strict=True):
        request = response.request
        assert line["path"] == request.url.path and line["method"] == request.method
        assert line["status"] == response.status_code
        assert line["channel"] in ("wechatpay", "alipay") and line["host"] == request.url.host
        assert isinstance(line["ms"], int) and line["ms"] >= 0 and line["ref"]
    out = captured_json.getvalue()
    assert subject not in out  # no request body
    assert "?" not in out and "sign=" not in out
    for request in (response.request for response in answered):
        if request.url.query:
            assert request.url.query.decode() not in out
        auth = request.headers.get("authorization")
        if auth:
            assert auth.split("signature=")[-1] not in out
    assert not [line for line in lines if line["logger"].startswith(("httpx", "httpcore"))]


async def test_a_channel_call_without_an_answer_is_logged_once(
    stack: Stack, captured_json: io.StringIO
) -> None:
    from paymux.channels import base, registry

    factory = registry.get("wechatpay")
    refused = httpx.AsyncClient(transport=httpx.MockTransport(_refuse))
    try:
        from paymux.kit.logging import observe_channel_calls

        creds = stack.sandboxes["wechatpay"].provision("http://gateway.test/sandbox/wechatpay")
        adapter = factory(creds, observe_channel_calls(refused))
        with pytest.raises(base.ChannelError):
            await adapter.query_payment("att_unanswered")
    finally:
        await refused.aclose()
    [line] = [x for x in json_lines(captured_json) if x["event"] == "channel_call"]
    assert line["channel"] == "wechatpay" and line["operation"] == "query_payment"
    assert line["ref"] == "att_unanswered" and line["status"] is None
    assert line["error"] == "ConnectError" and line["level"] == "warning"


def _refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)
