"""``POST /s/{code}`` is rate-limited per client IP and per code (in-process token buckets);
the clock is injected, so the tests move time instead of waiting."""

from __future__ import annotations

import pytest

from paymux.store_codes import endpoints
from paymux.web.ratelimit import RateLimiter
from tests.conftest import Stack, Tenant
from tests.store_codes.test_store_codes import BROWSER, _create, _open, _path, _payments


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class TestRateLimiter:
    def test_a_bucket_empties_and_refills_evenly(self) -> None:
        clock = FakeClock()
        limiter = RateLimiter(capacity=3, per_seconds=60, clock=clock)
        assert [limiter.hit("a") for _ in range(3)] == [None, None, None]
        assert limiter.hit("a") == 20  # one request every 20 s
        assert limiter.hit("b") is None  # another key has its own bucket
        clock.t += 19
        assert limiter.hit("a") == 1
        clock.t += 1
        assert limiter.hit("a") is None and limiter.hit("a") == 20
        clock.t += 3600  # refilled to the capacity, not beyond
        assert [limiter.hit("a") for _ in range(4)] == [None, None, None, 20]

    def test_memory_is_bounded_by_forgetting_the_least_recent_keys(self) -> None:
        limiter = RateLimiter(capacity=1, per_seconds=60, clock=FakeClock(), max_keys=2)
        assert limiter.hit("a") is None and limiter.hit("a") is not None
        limiter.hit("b")
        limiter.hit("c")  # "a" is forgotten: it starts again with a full bucket
        assert limiter.hit("a") is None
        assert limiter.hit("c") is not None

    def test_per_code_limits_a_flood_from_many_addresses(self) -> None:
        limits = endpoints.SubmitLimits(clock=FakeClock())
        allowed = [limits.hit(f"10.0.{i // 250}.{i % 250}", "code-1") for i in range(61)]
        assert allowed[:60] == [None] * 60 and allowed[60] is not None
        assert limits.hit("10.9.9.9", "code-2") is None


async def test_too_many_submits_are_429_with_retry_after_and_make_no_payment(
    stack: Stack, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(endpoints, "limits", endpoints.SubmitLimits(clock=clock))
    code = await _create(stack, tenant)
    url = _path(code["url"])
    for _ in range(10):  # bad amounts: they count too, and make nothing
        r = await stack.client.post(url, data={"token": await _open(stack, code), "amount": "x"},
                                    headers=BROWSER)  # fmt: skip
        assert r.status_code == 400
    token = await _open(stack, code)
    api = await stack.client.post(url, data={"token": token, "amount": "5"})
    assert api.status_code == 429 and api.headers["retry-after"] == "6"
    error = api.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limited")
    assert "retry after 6 seconds" in error["message"]
    page = await stack.client.post(url, data={"token": token, "amount": "5"},
                                   headers={**BROWSER, "accept-language": "zh-CN"})  # fmt: skip
    assert page.status_code == 429 and page.headers["retry-after"] == "6"
    assert "text/html" in page.headers["content-type"] and "尝试次数过多" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    unknown = await stack.client.post("/s/nope", data={"token": token, "amount": "5"})
    assert unknown.status_code == 429  # probing codes is limited as well
    assert await _payments(stack, tenant) == []
    clock.t += 6
    ok = await stack.client.post(url, data={"token": token, "amount": "5"}, headers=BROWSER)
    assert ok.status_code == 303
    assert [p["amount"] for p in await _payments(stack, tenant)] == [500]
    # the page itself (GET) is not limited
    assert (await stack.client.get(url, headers=BROWSER)).status_code == 200


def test_every_customer_message_of_the_store_page_is_translated() -> None:
    """The amount page's refusals (and the rate-limit page) are msgids of the zh_CN catalogue:
    a message added to the service without a translation fails here."""
    from paymux.store_codes import service
    from paymux.web import i18n

    zh = i18n.translations("zh_CN")
    messages = [*service.CUSTOMER_MESSAGES, service.CANNOT_PAY]
    untranslated = [m for m in messages if zh.gettext(m) == m]
    assert not untranslated
    refusal = service.customer_message(service.InvalidRequest("no_channel", "anything else"))
    assert refusal == service.CANNOT_PAY  # nothing the gateway says internally reaches the page
