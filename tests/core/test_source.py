"""Unit tests for edge/core/source.py: the traffic source of an arrival."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import edge.core.data
from edge.core.data.refresh import main as refresh_main
from edge.core.data.refresh import refresh
from edge.core.source import (
    DIRECT,
    ENGINES,
    Source,
    classify,
    compile_engines,
    load_engines,
    slug,
)

HOSTS = frozenset({"shop.example"})
LANDING = "https://shop.example/p/lamp"
DATA = Path(edge.core.data.__file__).parent


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


def test_fbclid_alone_is_a_social_visit_not_a_paid_one() -> None:
    # Facebook adds fbclid to organic links too (issue 14, item 7)
    source = classify(f"{LANDING}?fbclid=IwAR0abc", "https://l.facebook.com/", HOSTS)
    assert source == Source("facebook", "social", None, None, "l.facebook.com")
    assert classify(f"{LANDING}?fbclid=IwAR0abc", None, HOSTS) == Source(
        "facebook", "social", None, None, None
    )


def test_fbclid_from_instagram_is_instagram_and_an_unknown_referrer_is_facebook() -> None:
    url = f"{LANDING}?fbclid=IwAR0abc&utm_campaign=spring"
    assert classify(url, "https://l.instagram.com/", HOSTS) == Source(
        "instagram", "social", "spring", None, "l.instagram.com"
    )
    assert classify(url, "https://blog.example.org/", HOSTS) == Source(
        "facebook", "social", "spring", None, "blog.example.org"
    )


def test_fbclid_with_a_paid_utm_medium_is_paid() -> None:
    url = f"{LANDING}?fbclid=IwAR0abc&utm_source=facebook&utm_medium=paid_social"
    assert classify(url, "https://l.facebook.com/", HOSTS) == Source(
        "facebook", "paid", None, None, "l.facebook.com"
    )


def test_other_click_ids_stay_paid() -> None:
    for key, source in (("gbraid", "google"), ("msclkid", "bing"), ("ttclid", "tiktok")):
        assert classify(f"{LANDING}?{key}=x", None, HOSTS) == Source(source, "paid")
    assert classify(f"{LANDING}?gclid=x&fbclid=y", None, HOSTS) == Source("google", "paid")


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


# --- search engines from the vendored list (Matomo's, edge/core/data/) -----------


@pytest.mark.parametrize(
    ("referrer", "source", "term", "domain"),
    [
        ("https://www.google.co.uk/search?q=oak+lamp", "google", "oak lamp", "google.co.uk"),
        ("https://www.google.com.br/search?q=abajur", "google", "abajur", "google.com.br"),
        ("https://www.google.de/url?sa=t&url=x", "google", None, "google.de"),
        ("https://www.bing.com/search?q=vase&form=QBLH", "bing", "vase", "bing.com"),
        ("https://cn.bing.com/search?q=vase", "bing", "vase", "cn.bing.com"),
        ("https://duckduckgo.com/?q=linen+throw", "duckduckgo", "linen throw", "duckduckgo.com"),
        (
            "https://yandex.ru/search/?text=%D0%BB%D0%B0%D0%BC%D0%BF%D0%B0",
            "yandex",
            "лампа",
            "yandex.ru",
        ),
        ("https://yandex.com.tr/search/?text=lamba", "yandex", "lamba", "yandex.com.tr"),
        ("https://www.baidu.com/s?wd=%E5%8F%B0%E7%81%AF", "baidu", "台灯", "baidu.com"),
        ("https://search.yahoo.com/search?p=mug", "yahoo", "mug", "search.yahoo.com"),
        ("https://de.search.yahoo.com/", "yahoo", None, "de.search.yahoo.com"),
        ("https://www.ecosia.org/search?q=vase", "ecosia", "vase", "ecosia.org"),
        ("https://www.qwant.com/?q=lampe", "qwant", "lampe", "qwant.com"),
        ("https://www.startpage.com/do/search", "startpage", None, "startpage.com"),
        ("https://search.naver.com/search.naver?query=lamp", "naver", "lamp", "search.naver.com"),
        ("https://images.google.de/?q=lamp", "google-images", "lamp", "images.google.de"),
        ("https://www.google.fr/imgres?imgurl=x&q=lampe", "google-images", "lampe", "google.fr"),
        # the phrase in the path, by the engine's regular expression
        ("https://www.gomeo.com/search/oak%20lamp", "gomeo", "oak lamp", "gomeo.com"),
        # the Google app on Android
        (
            "android-app://com.google.android.googlequicksearchbox/",
            "google",
            None,
            "com.google.android.googlequicksearchbox",
        ),
    ],
)
def test_search_engines_and_their_phrases(
    referrer: str, source: str, term: str | None, domain: str
) -> None:
    assert classify(LANDING, referrer, HOSTS) == Source(source, "search", None, term, domain)


@pytest.mark.parametrize(
    ("referrer", "source", "domain"),
    [
        ("https://search.brave.com/", "brave", "search.brave.com"),
        ("https://search.seznam.cz/", "seznam", "search.seznam.cz"),
        ("https://yandex.ru", "yandex", "yandex.ru"),
        ("https://www.baidu.com/", "baidu", "baidu.com"),
    ],
)
def test_an_engines_bare_origin_is_a_search_without_phrase(
    referrer: str, source: str, domain: str
) -> None:
    # what browsers send by default (strict-origin-when-cross-origin)
    assert classify(LANDING, referrer, HOSTS) == Source(source, "search", None, None, domain)


@pytest.mark.parametrize(
    "referrer",
    [
        "https://digg.com/2026/a-story-about-lamps",  # listed, but not a results page
        "https://support.google.com/websearch/answer/1",  # Google, but not its search
        "https://maps.google.com/maps/place/shop",
        "https://google.example.com/",  # "google" in a foreign domain
        "https://www.bing.com.evil.example/",
    ],
)
def test_engine_hosts_without_a_search_are_referrals(referrer: str) -> None:
    source = classify(LANDING, referrer, HOSTS)
    assert source is not None
    assert source.medium == "referral"
    assert source.source == source.referrer_domain


# --- social networks and webmail (the lists in edge/core/source.py) ---------------


@pytest.mark.parametrize(
    ("referrer", "source", "domain"),
    [
        ("https://t.co/AbC123", "twitter", "t.co"),
        ("https://x.com/someone/status/1", "twitter", "x.com"),
        ("https://www.linkedin.com/feed/", "linkedin", "linkedin.com"),
        ("https://lnkd.in/xyz", "linkedin", "lnkd.in"),
        ("https://www.reddit.com/r/malelivingspace/", "reddit", "reddit.com"),
        ("https://old.reddit.com/r/x", "reddit", "old.reddit.com"),
        ("https://www.instagram.com/", "instagram", "instagram.com"),
        ("https://l.instagram.com/?u=https%3A%2F%2Fshop.example", "instagram", "l.instagram.com"),
        ("https://lm.facebook.com/l.php?u=x", "facebook", "lm.facebook.com"),
        ("https://www.pinterest.de/pin/123/", "pinterest", "pinterest.de"),
        ("https://pl.pinterest.com/", "pinterest", "pl.pinterest.com"),
        ("https://m.youtube.com/watch?v=1", "youtube", "m.youtube.com"),
        ("https://www.tiktok.com/@shop", "tiktok", "tiktok.com"),
        ("android-app://com.facebook.katana/", "facebook", "com.facebook.katana"),
    ],
)
def test_social_networks(referrer: str, source: str, domain: str) -> None:
    assert classify(LANDING, referrer, HOSTS) == Source(source, "social", None, None, domain)


def test_facebooks_own_search_is_social_not_search() -> None:
    # Matomo lists www.facebook.com as a search engine; for a shop it is social
    source = classify(LANDING, "https://www.facebook.com/search/?q=lamp", HOSTS)
    assert source == Source("facebook", "social", None, None, "facebook.com")


@pytest.mark.parametrize(
    ("referrer", "source", "domain"),
    [
        ("https://mail.google.com/mail/u/0/#inbox", "gmail", "mail.google.com"),
        ("android-app://com.google.android.gm/", "gmail", "com.google.android.gm"),
        ("https://outlook.office365.com/mail/", "outlook", "outlook.office365.com"),
        ("https://uk.mail.yahoo.com/d/folders/1", "yahoo-mail", "uk.mail.yahoo.com"),
        ("https://mail.yandex.ru/", "yandex-mail", "mail.yandex.ru"),
        ("https://poczta.onet.pl/", "onet", "poczta.onet.pl"),
    ],
)
def test_webmail_is_email_even_on_a_search_engines_domain(
    referrer: str, source: str, domain: str
) -> None:
    assert classify(LANDING, referrer, HOSTS) == Source(source, "email", None, None, domain)


# --- the vendored list: loaded once, compiled, refreshable -------------------------------


def test_the_vendored_list_is_compiled_once_at_import() -> None:
    assert len(ENGINES) > 600  # host patterns of 275 engines
    google = ENGINES["google.{}"]
    assert [e.path for e in google][-1] == ""  # path-specific entries (imgres ...) first
    assert google[-1].source == "google" and google[-1].params == ("q",)
    assert load_engines() == ENGINES
    readme = (DATA / "README.md").read_text()
    digest = hashlib.sha256((DATA / "search_engines.json").read_bytes()).hexdigest()
    assert digest in readme, "search_engines.json changed: update edge/core/data/README.md"


def test_slugs() -> None:
    assert [slug(n) for n in ("Google", "Yahoo! Japan", "Cốc Cốc", "118 700")] == [
        "google",
        "yahoo-japan",
        "cốc-cốc",
        "118-700",
    ]


SEARCH_ENGINES_YML = """\
Google:
  -
    urls:
      - google.com
      - google.{}
    params:
      - q
    hiddenkeyword:
      - '/^$/'
      - '/'
Bing:
  -
    urls:
      - bing.com
    params:
      - q
DuckDuckGo:
  -
    urls:
      - duckduckgo.com
    params:
      - q
Example:
  -
    urls:
      - find.example
    params:
      - '/\\/s\\/([^\\/]+)/'
"""


def test_refresh_takes_matomos_yaml_and_refuses_anything_else(tmp_path: Path) -> None:
    target = tmp_path / "search_engines.json"
    target.write_bytes((DATA / "search_engines.json").read_bytes())
    source = tmp_path / "SearchEngines.yml"
    source.write_text(SEARCH_ENGINES_YML)
    change = refresh(source, target)
    assert (change.engines_before, change.engines_after) == (275, 4)
    assert change.added == ("Example",)
    table = compile_engines(json.loads(target.read_text()))
    assert table["find.example"][0].patterns[0].pattern == r"\/s\/([^\/]+)"
    kept = target.read_bytes()
    for bad in ("Google: [{urls: [google.com], params: ['/(/']}]\n", "- a list\n", "{}\n"):
        source.write_text(bad)
        with pytest.raises(ValueError):
            refresh(source, target)
        assert target.read_bytes() == kept


def test_refresh_command_reports_and_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "SearchEngines.yml"
    broken.write_text("Google: [\n")
    before = (DATA / "search_engines.json").read_bytes()
    assert refresh_main([str(broken)]) == 1
    assert "search_engines.json is unchanged" in capsys.readouterr().err
    assert (DATA / "search_engines.json").read_bytes() == before


HOSTISH = st.sampled_from(
    [
        *("google.co.uk", "www.bing.com", "yandex.ru", "l.facebook.com", "mail.google.com"),
        *("search.brave.com", "digg.com", "find.example", "shop.example", "[::1", "a..b"),
    ]
)


@given(
    st.one_of(
        st.text(max_size=300),
        st.builds(
            lambda scheme, host, rest: f"{scheme}://{host}{rest}",
            st.sampled_from(["https", "http", "android-app", ""]),
            HOSTISH,
            st.text(max_size=200),
        ),
    ),
    st.one_of(st.none(), st.text(max_size=200)),
)
def test_any_referrer_is_classified_without_error(referrer: str, url: str | None) -> None:
    source = classify(url, referrer, HOSTS)
    if source is not None:
        assert source.source and source.medium
        assert source.term is None or len(source.term) <= 200
