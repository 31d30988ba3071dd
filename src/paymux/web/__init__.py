"""The web foundation shared by every browser-facing domain (the cashier now, the console later).

* :class:`Site` — one Jinja2 environment over a domain's ``templates/`` plus the shared layout
  (``paymux/web/templates/base.html``), with Babel translations (``paymux/locale``) and the
  locale-aware filters ``money`` and ``datetime``.
* :meth:`Site.render` — the only way an HTML page leaves paymux: it mints a per-request CSP nonce
  and sets the security headers (strict CSP, ``frame-ancestors``, nosniff, Referrer-Policy, HSTS
  over https).
* :func:`static_router` — serves a domain's ``static/`` and the vendored assets
  (``paymux/static/vendor/<name>-<version>/``) at ``/static/...``; nothing comes from a CDN.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from paymux.kit import money
from paymux.kit.errors import NotFound
from paymux.web import i18n

if TYPE_CHECKING:
    import jinja2
    import segno

PACKAGE = Path(__file__).resolve().parent.parent
SHARED_TEMPLATES = Path(__file__).resolve().parent / "templates"
VENDOR = PACKAGE / "static" / "vendor"

DEFAULT_TIMEZONE = "Asia/Shanghai"
"""Dates on customer pages; ``PAYMUX_WEB_TIMEZONE`` overrides it for the installation."""


def platform_timezone() -> str:
    """The installation's zone for customer pages of merchants that set none."""
    return os.environ.get("PAYMUX_WEB_TIMEZONE", DEFAULT_TIMEZONE)


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in os.environ.get(name, "").split(",") if v.strip())


@dataclass(frozen=True)
class SecurityPolicy:
    """What a page may load and who may frame it. ``extra_script_origins`` is for the providers'
    own SDKs (Stripe.js, PayPal JS) on pages of live accounts only."""

    frame_ancestors: tuple[str, ...] = field(
        default_factory=lambda: _env_list("PAYMUX_FRAME_ANCESTORS")
    )
    extra_script_origins: tuple[str, ...] = ()
    extra_frame_origins: tuple[str, ...] = ()
    extra_connect_origins: tuple[str, ...] = ()
    form_actions: tuple[str, ...] = ("*",)  # redirect methods post forms to the channel
    scripts: bool = True
    """False: ``script-src 'none'`` — a page that needs no script runs none."""
    referrer_policy: str = "strict-origin-when-cross-origin"

    def csp(self, nonce: str) -> str:
        scripts = (
            " ".join(("'self'", f"'nonce-{nonce}'", *self.extra_script_origins))
            if self.scripts
            else "'none'"
        )
        frames = " ".join(self.frame_ancestors) or "'none'"
        parts = [
            "default-src 'self'",
            f"script-src {scripts}",
            f"style-src 'self' 'nonce-{nonce}'",
            "img-src 'self' data:",
            "connect-src " + " ".join(("'self'", *self.extra_connect_origins)),
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            f"form-action {' '.join(self.form_actions)}",
            f"frame-ancestors {frames}",
        ]
        if self.extra_frame_origins:
            parts.append(f"frame-src {' '.join(self.extra_frame_origins)}")
        return "; ".join(parts)


def security_headers(request: Request, nonce: str, policy: SecurityPolicy) -> dict[str, str]:
    headers = {
        "Content-Security-Policy": policy.csp(nonce),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": policy.referrer_policy,
        "Cache-Control": "no-store",
    }
    if not policy.frame_ancestors:
        headers["X-Frame-Options"] = "DENY"
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
    if request.url.scheme == "https" or forwarded == "https":
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return headers


def wants_html(request: Request) -> bool:
    """A browser (it accepts text/html) gets a page; an API client the machine-readable error."""
    return "text/html" in request.headers.get("accept", "")


def vendor_path(name: str) -> str:
    """URL of a vendored package's directory, e.g. ``/static/vendor/htmx.org-2.0.11``."""
    found = sorted(p.name for p in VENDOR.glob(f"{name}-*") if p.is_dir())
    if not found:
        raise LookupError(f"{name} is not vendored (scripts/vendor.py sync)")
    return f"/static/vendor/{found[-1]}"


class Site:
    """Templates of one domain on the shared layout, rendered with headers and translations."""

    def __init__(
        self,
        domain: str,
        template_dirs: Iterable[Path],
        *,
        policy: SecurityPolicy | None = None,
        timezone: str | None = None,
    ) -> None:
        self.domain = domain
        self.policy = policy or SecurityPolicy()
        self.timezone = timezone or platform_timezone()
        self.template_dirs = (*template_dirs, SHARED_TEMPLATES)
        self.globals: dict[str, Any] = {
            "vendor": vendor_path,
            "static": lambda path: f"/static/{domain}/{path}",
        }
        """What every template of the site sees besides its context (add before the first
        render)."""

    @cached_property
    def env(self) -> jinja2.Environment:
        """The Jinja2 environment, made on the first page: an API process that serves no page
        never imports Jinja2."""
        import jinja2

        loaders = [jinja2.FileSystemLoader(str(d)) for d in self.template_dirs]
        env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(["html"]),
            extensions=["jinja2.ext.i18n"],
        )
        env.globals.update(self.globals)
        return env

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        status_code: int = 200,
        locale: str | None = None,
        timezone: str | None = None,
        policy: SecurityPolicy | None = None,
    ) -> HTMLResponse:
        policy = policy or self.policy
        lang = locale or i18n.negotiate(request)
        tz = ZoneInfo(timezone or self.timezone)
        nonce = secrets.token_urlsafe(18)
        translations = i18n.translations(lang)

        def fmt_money(amount: int, currency: str) -> str:
            return i18n.format_money(money.to_major(amount, currency), currency, lang)

        def fmt_datetime(value: dt.datetime) -> str:
            return i18n.format_datetime(value.astimezone(tz), lang)

        ctx = {
            **(context or {}),
            "nonce": nonce,
            "lang": lang,
            "html_lang": i18n.html_lang(lang),
            "languages": i18n.LANGUAGES,
            "money": fmt_money,
            "datetime": fmt_datetime,
            "_": translations.gettext,
            "gettext": translations.gettext,
            "ngettext": translations.ngettext,
        }
        html = self.env.get_template(template).render(ctx)
        response = HTMLResponse(html, status_code=status_code)
        for name, value in security_headers(request, nonce, policy).items():
            response.headers[name] = value
        response.headers["Content-Language"] = i18n.html_lang(lang)
        if request.query_params.get("lang") in i18n.LANGUAGES:
            response.set_cookie(
                i18n.COOKIE, lang, max_age=365 * 86400, samesite="lax", httponly=True
            )
        return response


def qr_code(text: str, error: str = "m") -> segno.QRCode:
    """A QR code of ``text`` (segno is imported on first use: an API process that draws none
    never loads it)."""
    import segno

    return segno.make(text, error=error)


def _safe_file(root: Path, path: str) -> Path | None:
    try:
        target = (root / path).resolve()
        target.relative_to(root.resolve())
    except (ValueError, OSError):
        return None
    return target if target.is_file() else None


def static_router(domains: Mapping[str, Path]) -> APIRouter:
    """``/static/vendor/...`` (vendored, versioned: cached for a year) and
    ``/static/<domain>/...`` for each domain's own ``static/``."""
    router = APIRouter(include_in_schema=False)
    roots = {"vendor": VENDOR, **domains}

    @router.get("/static/{domain}/{path:path}")
    async def static_file(domain: str, path: str) -> Response:
        root = roots.get(domain)
        target = _safe_file(root, path) if root is not None else None
        if target is None:
            raise NotFound("file", path)
        cache = (
            "public, max-age=31536000, immutable" if domain == "vendor" else "public, max-age=300"
        )
        return FileResponse(
            target, headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
        )

    return router
