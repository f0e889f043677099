"""Unit tests for edge/tracker/source.py: the traffic source of an arrival."""

from __future__ import annotations

import pytest

from edge.tracker.source import DIRECT, Source, classify

HOSTS = frozenset({"shop.example"})
LANDING = "https://shop.example/p/lamp"


def test_google_search_with_a_query() -> None:
    source = classify(LANDING, "https://www.google.com/search?q=oak+lamp&hl=en", HOSTS)
    assert source == Source("google", "search", None, "oak lamp", "google.com")


def test_google_country_domain_without_a_query() -> None:
    source = classify(LANDING, "https://www.google.co.uk/", HOSTS)
    assert source == Source("google", "search", None, None, "google.co.uk")


def test_bing() -> None:
    source = classify(LANDING, "https://www.bing.com/search?q=vase&form=QBLH", HOSTS)
    assert source == Source("bing", "search", None, "vase", "bing.com")


def test_duckduckgo() -> None:
    source = classify(LANDING, "https://duckduckgo.com/", HOSTS)
    assert source == Source("duckduckgo", "search", None, None, "duckduckgo.com")


@pytest.mark.parametrize(
    ("referrer", "domain"),
    [
        ("https://www.facebook.com/", "facebook.com"),
        ("https://l.facebook.com/l.php?u=x", "l.facebook.com"),
        ("https://m.facebook.com/story", "m.facebook.com"),
    ],
)
def test_facebook_is_social(referrer: str, domain: str) -> None:
    assert classify(LANDING, referrer, HOSTS) == Source("facebook", "social", None, None, domain)


def test_a_lookalike_domain_is_not_facebook() -> None:
    source = classify(LANDING, "https://notfacebook.com/", HOSTS)
    assert source == Source("notfacebook.com", "referral", None, None, "notfacebook.com")


def test_outlook_webmail_is_email() -> None:
    source = classify(LANDING, "https://outlook.live.com/mail/0/", HOSTS)
    assert source == Source("outlook", "email", None, None, "outlook.live.com")


def test_gmail_webmail_is_email() -> None:
    source = classify(LANDING, "https://mail.google.com/mail/u/0/", HOSTS)
    assert source == Source("gmail", "email", None, None, "mail.google.com")


def test_utm_tags_with_cpc_are_paid() -> None:
    url = f"{LANDING}?utm_source=Google&utm_medium=CPC&utm_campaign=spring&utm_term=oak+lamp"
    source = classify(url, "https://www.google.com/", HOSTS)
    assert source == Source("google", "paid", "spring", "oak lamp", "google.com")


def test_utm_newsletter_is_email() -> None:
    url = f"{LANDING}?utm_source=newsletter&utm_medium=newsletter&utm_campaign=may"
    assert classify(url, None, HOSTS) == Source("newsletter", "email", "may", None, None)


def test_utm_social_and_unknown_mediums() -> None:
    url = f"{LANDING}?utm_source=facebook&utm_medium=social"
    assert classify(url, None, HOSTS) == Source("facebook", "social", None, None, None)
    url = f"{LANDING}?utm_source=partner&utm_medium=Podcast"
    assert classify(url, None, HOSTS) == Source("partner", "podcast", None, None, None)
    # a medium without a source falls back to the referrer's domain
    url = f"{LANDING}?utm_medium=cpc"
    assert classify(url, "https://ads.example.net/", HOSTS) == Source(
        "ads.example.net", "paid", None, None, "ads.example.net"
    )
    assert classify(url, None, HOSTS) == Source("unknown", "paid", None, None, None)


def test_utm_tags_win_over_an_internal_referrer() -> None:
    url = f"{LANDING}?utm_source=newsletter&utm_medium=email"
    source = classify(url, "https://shop.example/", HOSTS)
    assert source == Source("newsletter", "email", None, None, "shop.example")


def test_gclid_is_paid_google() -> None:
    url = f"{LANDING}?gclid=Cj0KCQ&utm_campaign=brand"
    assert classify(url, None, HOSTS) == Source("google", "paid", "brand", None, None)
    source = classify(f"{LANDING}?gclid=x", "https://www.google.com/", HOSTS)
    assert source == Source("google", "paid", None, None, "google.com")


def test_fbclid_is_paid_facebook() -> None:
    source = classify(f"{LANDING}?fbclid=IwAR0abc", "https://l.facebook.com/", HOSTS)
    assert source == Source("facebook", "paid", None, None, "l.facebook.com")


@pytest.mark.parametrize(
    "referrer",
    [
        "https://shop.example/c/lamps",
        "https://www.shop.example/",
        "http://blog.shop.example/post",
        "https://SHOP.example/",
    ],
)
def test_internal_referrer_is_internal_navigation(referrer: str) -> None:
    assert classify(LANDING, referrer, HOSTS) is None
    assert classify(f"{LANDING}?gclid=x", referrer, HOSTS) is None


def test_unknown_referrer_is_a_referral_with_its_domain() -> None:
    source = classify(LANDING, "https://www.blog.example.org/best-lamps?ref=1", HOSTS)
    assert source == Source("blog.example.org", "referral", None, None, "blog.example.org")


def test_a_shop_suffix_lookalike_is_not_internal() -> None:
    source = classify(LANDING, "https://evilshop.example/", HOSTS)
    assert source == Source("evilshop.example", "referral", None, None, "evilshop.example")


@pytest.mark.parametrize("referrer", [None, "", "not a url", "about:blank"])
def test_no_referrer_is_direct(referrer: str | None) -> None:
    assert classify(LANDING, referrer, HOSTS) is DIRECT
    assert Source("direct", "none") == DIRECT


def test_no_url_and_no_referrer_is_direct() -> None:
    assert classify(None, None, HOSTS) is DIRECT
    assert classify("https://shop.example/?page=2", None, HOSTS) is DIRECT


def test_search_phrase_is_cut_to_200_characters() -> None:
    source = classify(LANDING, "https://www.google.com/search?q=" + "a" * 500, HOSTS)
    assert source is not None
    assert source.term == "a" * 200
