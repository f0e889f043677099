"""Traffic source of a visit: source / medium / campaign / search phrase.

Pure functions over the landing URL and the referrer. Tagged links win (UTM
parameters, then ad click ids), then the referrer is classified by host.
The host lists are short on purpose: they cover the engines and networks that
send nearly all traffic to European and American shops; anything else with a
referrer is ``referral`` with its domain, which is still targetable.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

# host suffix -> (source, query parameter carrying the search phrase)
SEARCH_ENGINES: dict[str, tuple[str, str]] = {
    "google": ("google", "q"),
    "bing.com": ("bing", "q"),
    "duckduckgo.com": ("duckduckgo", "q"),
    "search.yahoo.com": ("yahoo", "p"),
    "yandex": ("yandex", "text"),
    "baidu.com": ("baidu", "wd"),
    "ecosia.org": ("ecosia", "q"),
    "search.brave.com": ("brave", "q"),
    "qwant.com": ("qwant", "q"),
    "startpage.com": ("startpage", "query"),
    "seznam.cz": ("seznam", "q"),
}
SOCIAL: dict[str, str] = {
    "facebook.com": "facebook",
    "fb.com": "facebook",
    "instagram.com": "instagram",
    "t.co": "twitter",
    "twitter.com": "twitter",
    "x.com": "twitter",
    "linkedin.com": "linkedin",
    "lnkd.in": "linkedin",
    "pinterest.com": "pinterest",
    "reddit.com": "reddit",
    "tiktok.com": "tiktok",
    "youtube.com": "youtube",
    "wykop.pl": "wykop",
    "vk.com": "vk",
    "threads.net": "threads",
}
WEBMAIL: dict[str, str] = {
    "mail.google.com": "gmail",
    "outlook.live.com": "outlook",
    "outlook.office.com": "outlook",
    "mail.yahoo.com": "yahoo-mail",
    "poczta.onet.pl": "onet",
    "poczta.wp.pl": "wp",
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
    "fbclid": "facebook",
    "ttclid": "tiktok",
}


@dataclass(frozen=True, slots=True)
class Source:
    source: str
    medium: str
    campaign: str | None = None
    term: str | None = None
    referrer_domain: str | None = None


DIRECT = Source("direct", "none")


def classify(url: str | None, referrer: str | None, site_hosts: Collection[str]) -> Source | None:
    """Classify an arrival; ``None`` means internal navigation (same site)."""
    params = _query(url)
    ref_host = _host(referrer)
    if ref_host and _matches(ref_host, site_hosts) and "utm_source" not in params:
        return None
    if "utm_source" in params or "utm_medium" in params:
        return _from_utm(params, ref_host)
    for key, source in CLICK_IDS.items():
        if key in params:
            return Source(source, "paid", _first(params, "utm_campaign"), None, ref_host)
    if not ref_host:
        return DIRECT
    return _from_referrer(ref_host, referrer or "")


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
    # Webmail first: mail.google.com must not count as a Google search.
    for suffix, name in WEBMAIL.items():
        if _suffix_match(host, suffix):
            return Source(name, "email", None, None, host)
    for suffix, (engine, param) in SEARCH_ENGINES.items():
        if _suffix_match(host, suffix):
            return Source(engine, "search", None, _first(_query(referrer), param), host)
    for suffix, name in SOCIAL.items():
        if _suffix_match(host, suffix):
            return Source(name, "social", None, None, host)
    return Source(host, "referral", None, None, host)


def _suffix_match(host: str, suffix: str) -> bool:
    if "." not in suffix:  # a brand across country domains: google.de, yandex.ru ...
        return f".{suffix}." in f".{host}"
    return host == suffix or host.endswith("." + suffix)


def _matches(host: str, site_hosts: Collection[str]) -> bool:
    return any(host == h or host.endswith("." + h) for h in site_hosts)


def _host(url: str | None) -> str | None:
    if not url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    return host[4:] if host.startswith("www.") else host


def _query(url: str | None) -> dict[str, list[str]]:
    if not url:
        return {}
    try:
        return parse_qs(urlsplit(url).query, max_num_fields=50)
    except ValueError:
        return {}


def _first(params: dict[str, list[str]], key: str) -> str | None:
    values = params.get(key)
    return values[0][:200] if values and values[0] else None
