"""Texts, prices and links inside widgets: the filters templates get."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from babel.core import Locale, UnknownLocaleError
from babel.numbers import format_currency

# http(s) links, or site-relative ones. Not "//host" (another site, scheme
# of the page), not "javascript:", "data:" or anything else.
_SAFE_URL = re.compile(r"^(https?://[^\s\"'<>]+|/(?!/)[^\s\"'<>]*)$", re.IGNORECASE)


def safe_url(value: Any) -> str:
    """The URL if it is http(s) or site-relative, else a harmless ``#``."""
    if isinstance(value, str) and _SAFE_URL.match(value.strip()):
        return value.strip()
    return "#"


def is_safe_url(value: Any) -> bool:
    return safe_url(value) != "#"


def language(lang: str | None) -> str:
    """``en-GB`` → ``en``."""
    return (lang or "").split("-")[0].split("_")[0].lower()


def page_language(lang: str | None, site_locale: str, page_lang: str | None = None) -> str:
    """The language a page is shown in: the page's own (``<html lang>``, sent
    as ``hello.page_lang``: a shop in Polish gets Polish widgets in any
    browser), else the visitor's (``hello.lang``, or an ``Accept-Language``
    header's first choice), else the site's ``locale``."""
    return language(page_lang) or language(lang) or language(site_locale)


def preferred(accept_language: str | None) -> str | None:
    """The first choice of an ``Accept-Language`` header (highest ``q``,
    earliest on ties), ``*`` and malformed entries skipped."""
    best: tuple[float, str] | None = None
    for part in (accept_language or "").split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*" or len(tag) > 35:
            continue
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if q > 0 and (best is None or q > best[0]):
            best = (q, tag)
    return best[1] if best else None


def pick(value: Any, lang: str, default: str) -> str:
    """A text given as a string, or per language (``{pl: ..., en: ...}``):
    the page's language, else the site's, else the first one given."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        for key in (lang, default):
            if key in value:
                return str(value[key])
        return str(next(iter(value.values()), ""))
    return str(value)


# The texts of edge's own templates, in every language the demo uses. A site
# sets any of them per widget (``success_headline: {pl: ...}``); what it does
# not set comes from here, key by key (``text``).
ANY_KIND = "*"
BUILT_IN: Mapping[str, Mapping[str, Mapping[str, str]]] = {
    ANY_KIND: {
        "en": {"close": "Close"},
        "pl": {"close": "Zamknij"},
    },
    "coupon": {
        "en": {
            "name_label": "First name",
            "email_label": "Your email",
            "cta": "Get my code",
            "success_headline": "Here is your code",
            "success_body": "Enter it at checkout.",
            "exhausted_headline": "Thank you!",
            "exhausted_body": "All codes of this offer are gone, but we will keep you posted.",
        },
        "pl": {
            "name_label": "Imię",
            "email_label": "Twój e-mail",
            "cta": "Pokaż mój kod",
            "success_headline": "Oto Twój kod",
            "success_body": "Wpisz go przy składaniu zamówienia.",
            "exhausted_headline": "Dziękujemy!",
            "exhausted_body": "Kody z tej oferty już się skończyły, ale damy Ci znać o kolejnych.",
        },
    },
}
LANGUAGES = ("en", "pl")  # the languages of BUILT_IN; English is the last resort


def built_in(kind: str, key: str, lang: str) -> str | None:
    """Edge's own text of ``key`` for a widget of ``kind`` in ``lang``, or None."""
    for group in (kind, ANY_KIND):
        found = BUILT_IN.get(group, {}).get(lang, {}).get(key)
        if found is not None:
            return found
    return None


def text(widget: Mapping[str, Any], key: str, lang: str, default: str) -> str:
    """The text of ``key`` in ``widget`` for a page in ``lang`` on a site whose
    language is ``default``, falling back key by key: the site's text in the
    page's language (or one plain string, for every language), edge's own in
    the page's language, the site's in the site's language, edge's in the
    site's language, edge's in English, the first text the site gave, else
    ``""``. So a Polish visitor reads Polish wherever anyone wrote it, and a
    site that overrides one text in one language keeps every other one."""
    value = widget.get(key)
    given: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
    if value is not None and not isinstance(value, Mapping):
        return str(value)
    kind = str(widget.get("kind", ""))
    for found in (
        given.get(lang),
        built_in(kind, key, lang),
        given.get(default),
        built_in(kind, key, default),
        built_in(kind, key, "en"),
        next(iter(given.values()), None),
    ):
        if found is not None:
            return str(found)
    return ""


@lru_cache(maxsize=256)
def _locale(name: str) -> Locale | None:
    try:
        return Locale.parse(name.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return None


def money(amount: Any, currency: str, locale: str) -> str:
    """A price in the site's currency, formatted for the page's locale (Babel):
    the one formatter of prices in widgets and in the demo shop's pages
    (``Renderer.money``), so both show ``€149.00`` in English and
    ``149,00 €`` in Polish."""
    if not isinstance(amount, int | float) or isinstance(amount, bool):
        return ""
    return _money(float(amount), currency, locale)


@lru_cache(maxsize=8192)
def _money(amount: float, currency: str, locale: str) -> str:
    # Babel formats in ~50 µs; a shop has few distinct prices, rendered all day.
    chosen = _locale(locale) or _locale("en")
    return format_currency(amount, currency, locale=chosen)
