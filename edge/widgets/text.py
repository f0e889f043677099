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


@lru_cache(maxsize=256)
def _locale(name: str) -> Locale | None:
    try:
        return Locale.parse(name.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return None


def money(amount: Any, currency: str, locale: str) -> str:
    """A price in the site's currency, formatted for the page's locale (Babel)."""
    if not isinstance(amount, int | float) or isinstance(amount, bool):
        return ""
    return _money(float(amount), currency, locale)


@lru_cache(maxsize=8192)
def _money(amount: float, currency: str, locale: str) -> str:
    # Babel formats in ~50 µs; a shop has few distinct prices, rendered all day.
    chosen = _locale(locale) or _locale("en")
    return format_currency(amount, currency, locale=chosen)
