"""The web foundation: catalogues complete, no external origins, locale negotiation, formats,
security headers."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from starlette.requests import Request

from paymux.web import SecurityPolicy, Site, i18n, security_headers

SRC = Path(__file__).resolve().parents[2] / "src" / "paymux"

ALLOWED_ORIGINS = {
    # Providers' client SDKs, only on pages of live accounts (the sandboxes replace them).
    "https://js.stripe.com",
    "https://www.paypal.com",
}


def _request(query: str = "", headers: dict[str, str] | None = None,
             scheme: str = "http") -> Request:  # fmt: skip
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": query.encode(),
                    "headers": raw, "scheme": scheme, "server": ("t", 80)})  # fmt: skip


def _messages() -> set[str]:
    method_map = [("cashier/**.py", "python"), ("web/**.py", "python"),
                  ("**/templates/**.html", "jinja2")]  # fmt: skip
    found = set()
    for _, _, msg, _, _ in extract_from_dir(
        str(SRC), method_map, keywords={"_": None, "gettext": None, "N_": None}
    ):
        found.add(msg if isinstance(msg, str) else msg[0])
    return found


def test_every_message_is_translated_to_zh_cn() -> None:
    with i18n.po_path("zh_CN").open("rb") as f:
        catalog = read_po(f)
    translated = {m.id: m.string for m in catalog if m.id}
    missing = sorted(m for m in _messages() if not translated.get(m))
    assert not missing, f"untranslated (make i18n, then translate): {missing}"
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert not fuzzy


def test_no_template_references_an_origin_off_the_allow_list() -> None:
    url = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s"'<>)]*""", re.I)
    offenders = []
    for path in SRC.rglob("templates/*.html"):
        for m in url.finditer(path.read_text()):
            origin = "/".join(m.group(0).split("/")[:3])
            if origin not in ALLOWED_ORIGINS:
                offenders.append(f"{path.relative_to(SRC)}: {m.group(0)}")
    assert not offenders


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "want"),
    [
        ("lang=en", "zh_CN", "zh-CN", "en"),
        ("", "en", "zh-CN,zh;q=0.9", "en"),
        ("", "", "en-US,en;q=0.9", "en"),
        ("", "", "fr;q=1,zh-Hans-CN;q=0.5", "zh_CN"),
        ("", "", "zh-TW,en;q=0.8", "en"),
        ("lang=xx", "", "", "zh_CN"),
        ("", "", "", "zh_CN"),
    ],
)
def test_locale_comes_from_query_then_cookie_then_accept_language(
    query: str, cookie: str, accept: str, want: str
) -> None:
    headers = {"accept-language": accept}
    if cookie:
        headers["cookie"] = f"{i18n.COOKIE}={cookie}"
    assert i18n.negotiate(_request(query, headers)) == want


def test_amounts_and_dates_per_locale() -> None:
    assert i18n.format_money("19.99", "CNY", "zh_CN") == "¥19.99"
    assert i18n.format_money("5.00", "USD", "en") == "US$5.00"
    assert i18n.format_money("100", "JPY", "zh_CN") == "JP¥100"
    site = Site("t", [])
    assert site.timezone == "Asia/Shanghai"
    noon_utc = dt.datetime(2026, 1, 2, 4, 0, tzinfo=dt.UTC)
    shown = i18n.format_datetime(noon_utc.astimezone(dt.timezone(dt.timedelta(hours=8))), "en")
    assert "12:00:00" in shown


def test_security_headers() -> None:
    headers = security_headers(_request(), "N0NCE", SecurityPolicy(frame_ancestors=()))
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-N0NCE'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"]
    assert "Strict-Transport-Security" not in headers
    https = security_headers(_request(scheme="https"), "n", SecurityPolicy())
    assert https["Strict-Transport-Security"].startswith("max-age=")
    framed = SecurityPolicy(frame_ancestors=("https://shop.example",)).csp("n")
    assert "frame-ancestors https://shop.example" in framed
