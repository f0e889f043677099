"""Tests for edge/tracker/useragent.py: device/OS/browser families and bot detection.

The bot figures are measured on ``tests/data/useragents`` (its README names
each source and licence): *in sample*, the data the generic rules were
written from (bots.json: every example of monperrus/crawler-user-agents;
browsers.json: real browsers from ua-parser/uap-core's test resources), and
*out of sample*, sources neither the rules nor the crawler list were written
from (Matomo device-detector's fixtures, intoli/user-agents' browsers).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import time
from pathlib import Path

import pytest

from edge.tracker import useragent
from edge.tracker.useragent import DeviceInfo, classify

DATA = Path(__file__).resolve().parents[1] / "data" / "useragents"

MIN_BOTS_FLAGGED = 0.97
MAX_BROWSERS_FLAGGED = 0.001
# Matomo's browser fixtures are every browser its parser knows, most of them
# exotic (consoles, AmigaOS, VMS); reported, and held below this bound.
MAX_EXOTIC_BROWSERS_FLAGGED = 0.005

IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
IPAD_SAFARI = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"
)
ANDROID_PHONE_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36"
)
ANDROID_TABLET_CHROME = (
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.6099.144 Safari/537.36"
)
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
WINDOWS_EDGE = WINDOWS_CHROME + " Edg/120.0.2210.91"
MAC_SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Safari/605.1.15"
)
LINUX_FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GOOGLEBOT_SMARTPHONE = (
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.6099.71 Mobile Safari/537.36 "
    "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)
CURL = "curl/8.4.0"


def _load(name: str) -> list[str]:
    path = DATA / name
    # Deliberately a failure, not a skip: without the data the figures are unproven.
    assert path.is_file(), f"missing test data {path}"
    with (gzip.open(path, "rt", encoding="utf-8") if name.endswith(".gz") else path.open()) as f:
        agents = json.load(f)["user_agents"]
    assert agents, f"{path} has no user_agents"
    return [str(a) for a in agents]


def _rates(bots_file: str, browsers_file: str, label: str) -> tuple[float, float, list[str]]:
    bots, browsers = _load(bots_file), _load(browsers_file)
    missed = [ua for ua in bots if not classify(ua).is_bot]
    wrongly = [ua for ua in browsers if classify(ua).is_bot]
    bots_rate = 1 - len(missed) / len(bots)
    browsers_rate = len(wrongly) / len(browsers)
    print(
        f"\n{label}: bots flagged {bots_rate:.2%} ({len(bots) - len(missed)}/{len(bots)}, "
        f"{bots_file}); browsers wrongly flagged {browsers_rate:.3%} "
        f"({len(wrongly)}/{len(browsers)}, {browsers_file}); backend {useragent.BACKEND}"
    )
    assert bots_rate >= MIN_BOTS_FLAGGED, missed[:20]
    return bots_rate, browsers_rate, wrongly


def test_bot_detection_in_sample() -> None:
    _, browsers_rate, wrongly = _rates("bots.json", "browsers.json", "in sample")
    assert browsers_rate <= MAX_BROWSERS_FLAGGED, wrongly


def test_bot_detection_out_of_sample() -> None:
    _, browsers_rate, wrongly = _rates("matomo-bots.json", "intoli-browsers.json", "out of sample")
    assert browsers_rate <= MAX_BROWSERS_FLAGGED, wrongly
    exotic = _load("matomo-browsers.json.gz")
    flagged = [ua for ua in exotic if classify(ua).is_bot]
    print(f"Matomo's browser fixtures wrongly flagged: {len(flagged) / len(exotic):.3%}")
    assert len(flagged) / len(exotic) <= MAX_EXOTIC_BROWSERS_FLAGGED, flagged[:20]


@pytest.mark.parametrize(
    "ua",
    [
        "Mediapartners-Google",
        "AHC/2.0",
        "Site24x7",
        "GTmetrix",
        "http_get",
        "OpenVAS",
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    ],
)
def test_named_crawlers_that_look_like_browsers(ua: str) -> None:
    assert classify(ua).is_bot


def test_android_model_names_are_not_crawler_names() -> None:
    """The list's "Buddy" and "Demon" are robots, not these handsets."""
    for model in ("I-Buddy 3 Build/IMM76D", "MID1125 Build/GreenDemon_v1.0"):
        ua = (
            f"Mozilla/5.0 (Linux; Android 4.0.4; {model}) AppleWebKit/535.19 "
            "(KHTML, like Gecko) Chrome/18.0.1025.166 Safari/535.19"
        )
        assert not classify(ua).is_bot, ua


def test_the_grouped_crawler_list_finds_what_the_flat_list_finds() -> None:
    """Rule 4's regex is crawlerdetect's patterns lower-cased and grouped by
    leading characters (useragent._grouped). On what rule 4 searches of
    every vendored bot and current browser (the UA lower-cased, without the
    exclusions and the Android model), it must find a name exactly when
    crawlerdetect's patterns as one case-insensitive alternation do."""
    from crawlerdetect.providers.crawlers import data as crawlers

    flat = re.compile("|".join(crawlers), re.I)
    names = ("bots.json", "browsers.json", "matomo-bots.json", "intoli-browsers.json")
    searched = [
        useragent._LIST_EXCLUSIONS.sub("", useragent._ANDROID_COMMENT_RE.sub("", ua.lower()))
        for name in names
        for ua in _load(name)
    ]
    assert len(searched) > 9_000
    grouped = useragent._LIST_CRAWLERS
    differ = [s for s in searched if (grouped.search(s) is None) != (flat.search(s) is None)]
    assert differ == []


def test_grouping_keeps_what_applies_to_a_leading_character() -> None:
    grouped = useragent._grouped(["ab", "ac", "a+z", "x|y", "\\/q", "\\/r", "d"], 3)
    assert grouped == "a(?:b|c)|/(?:q|r)|d|a+z|x|y"
    pattern = re.compile(grouped)
    assert pattern.fullmatch("aaz") and pattern.fullmatch("/q") and pattern.fullmatch("y")
    assert useragent._lowered_pattern("Zend\\\\Http\\D") == "zend\\\\http\\D"


def test_bots_have_bot_device_type() -> None:
    for ua in _load("bots.json")[:200]:
        info = classify(ua)
        assert (info.device_type == "bot") == info.is_bot


@pytest.mark.parametrize(
    ("ua", "device_type", "os", "browser"),
    [
        (IPHONE_SAFARI, "mobile", "iOS", "Mobile Safari"),
        (IPAD_SAFARI, "tablet", "iOS", "Mobile Safari"),
        (ANDROID_PHONE_CHROME, "mobile", "Android", "Chrome Mobile"),
        (ANDROID_TABLET_CHROME, "tablet", "Android", "Chrome"),
        (WINDOWS_CHROME, "desktop", "Windows", "Chrome"),
        (WINDOWS_EDGE, "desktop", "Windows", "Edge"),
        (MAC_SAFARI, "desktop", "Mac OS X", "Safari"),
        (LINUX_FIREFOX, "desktop", "Linux", "Firefox"),
    ],
)
def test_browsers(ua: str, device_type: str, os: str, browser: str) -> None:
    assert classify(ua) == DeviceInfo(is_bot=False, device_type=device_type, os=os, browser=browser)


@pytest.mark.parametrize(
    "ua",
    [
        GOOGLEBOT,
        GOOGLEBOT_SMARTPHONE,
        CURL,
        "Wget/1.21.4",
        "python-requests/2.31.0",
        "Go-http-client/2.0",
        "okhttp/4.12.0",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (compatible; SomeNewCrawler/1.0; +https://example.org/about)",
    ],
)
def test_bots(ua: str) -> None:
    info = classify(ua)
    assert info.is_bot
    assert info.device_type == "bot"


def test_googlebot_keeps_its_family() -> None:
    assert classify(GOOGLEBOT).browser == "Googlebot"
    assert classify(CURL).browser == "curl"


@pytest.mark.parametrize("ua", ["", "   ", "\t\n"])
def test_empty_is_other_not_bot(ua: str) -> None:
    info = classify(ua)
    assert not info.is_bot
    assert info.device_type == "other"
    assert info.os == "Other"
    assert info.browser == "Other"


@pytest.mark.parametrize(
    "ua",
    [
        "x" * 100_000,  # 100 KB
        IPHONE_SAFARI * 2_000,
        "\x00\x01\x02",
        "\ud800 lone surrogate",  # what surrogateescape makes of invalid UTF-8 bytes
        "((((((((((((((((((((((",
        "Mozilla/5.0 (" + "; " * 10_000,
        "日本語のユーザーエージェント",
        "garbage",
    ],
)
def test_never_raises(ua: str) -> None:
    info = classify(ua)
    assert info.device_type in useragent.DEVICE_TYPES
    assert isinstance(info.is_bot, bool)


def test_non_string_input_does_not_raise() -> None:
    assert classify(None) == classify("")  # type: ignore[arg-type]


def test_huge_input_is_truncated_before_caching() -> None:
    useragent.cache_clear()
    prefix = IPHONE_SAFARI.ljust(useragent.MAX_LENGTH, "z")
    classify(prefix + "x" * 100_000)
    classify(prefix + "y" * 100_000)
    info = useragent.cache_info()
    # Both inputs share their first MAX_LENGTH characters: one parse, one hit.
    assert (info.misses, info.hits) == (1, 1)
    assert info.maxsize == useragent.CACHE_SIZE


def test_to_attributes() -> None:
    attrs = classify(IPHONE_SAFARI).to_attributes()
    assert attrs == {"type": "mobile", "os": "iOS", "browser": "Mobile Safari", "bot": False}
    assert type(attrs) is dict
    assert classify(GOOGLEBOT).to_attributes()["bot"] is True
    attrs["type"] = "changed"  # a fresh dict each time: callers may mutate it
    assert classify(IPHONE_SAFARI).device_type == "mobile"


def test_device_info_is_frozen_and_slotted() -> None:
    info = classify(WINDOWS_CHROME)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.os = "Linux"  # type: ignore[misc]
    assert not hasattr(info, "__dict__")
    assert hash(info) == hash(classify(WINDOWS_CHROME))


def test_speed() -> None:
    """Prints µs per uncached and cached classify (informational, loose bound)."""
    agents = _load("browsers.json")[:2000]
    useragent.cache_clear()
    start = time.perf_counter()
    for ua in agents:
        classify(ua)
    uncached = (time.perf_counter() - start) / len(agents) * 1e6
    start = time.perf_counter()
    for _ in range(5):
        for ua in agents:
            classify(ua)
    cached = (time.perf_counter() - start) / (5 * len(agents)) * 1e6
    print(f"\nclassify: {uncached:.1f} µs uncached, {cached:.2f} µs cached")
    assert cached < uncached
