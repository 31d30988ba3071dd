"""Languages of the customer-facing pages: Babel catalogues under ``paymux/locale``.

The message source is English; ``zh_CN`` translates every message (tests/web check the catalogue
is complete and current against the templates and the error catalogue). Catalogues are compiled
from the ``.po`` files when first used, so the source of truth is the reviewed ``.po`` text.
"""

from __future__ import annotations

import datetime as dt
import functools
import gettext
import io
from decimal import Decimal
from pathlib import Path

from fastapi import Request

# Babel is imported where it is used: an API process that serves no page never loads it.

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
DOMAIN = "messages"
LANGUAGES = ("zh_CN", "en")
"""Offered languages, the default first (paymux's customers are mostly in mainland China)."""
DEFAULT = "zh_CN"
COOKIE = "paymux_lang"


def N_(message: str) -> str:
    """Marks a message for extraction (``make i18n``); translated when a page renders it."""
    return message


def _normalise(tag: str) -> str | None:
    from babel import Locale, UnknownLocaleError

    tag = tag.strip().replace("-", "_")
    if not tag:
        return None
    try:
        loc = Locale.parse(tag)
    except (UnknownLocaleError, ValueError):
        return None
    if loc.language == "zh":
        # Only Simplified Chinese is offered: zh, zh_Hans, zh_CN, zh_SG.
        if loc.script == "Hant" or loc.territory in {"TW", "HK", "MO"}:
            return None
        return "zh_CN"
    if loc.language == "en":
        return "en"
    return None


def negotiate(request: Request) -> str:
    """``?lang=`` > cookie > ``Accept-Language`` > the default."""
    for candidate in (request.query_params.get("lang"), request.cookies.get(COOKIE)):
        if candidate:
            lang = _normalise(candidate)
            if lang:
                return lang
    header = request.headers.get("accept-language", "")
    weighted: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag and tag != "*" and q > 0:
            weighted.append((-q, i, tag))
    for _, _, tag in sorted(weighted):
        lang = _normalise(tag)
        if lang:
            return lang
    return DEFAULT


def html_lang(lang: str) -> str:
    return lang.replace("_", "-")


def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    path = po_path(lang)
    if not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as f:
        catalog = read_po(f, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


FORMAT_LOCALES = {"en": "en_001"}
"""Formatting locale per language: international English names currencies unambiguously
(``US$5.00``, ``CN¥19.99``) where ``en_US`` would print a bare ``$``."""


def format_money(major: str, currency: str, lang: str) -> str:
    """``¥19.99`` in zh_CN, ``CN¥19.99`` / ``US$5.00`` in en (Babel's CLDR symbols)."""
    from babel.numbers import format_currency

    return format_currency(Decimal(major), currency, locale=FORMAT_LOCALES.get(lang, lang))


def format_datetime(value: dt.datetime, lang: str) -> str:
    from babel.dates import format_datetime as _babel_datetime

    return _babel_datetime(
        value, format="medium", tzinfo=value.tzinfo, locale=FORMAT_LOCALES.get(lang, lang)
    )
