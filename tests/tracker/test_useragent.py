"""Tests for edge/tracker/useragent.py: device/OS/browser families and bot detection.

The bot figures are measured on ``shared/useragents`` (bots.json: every example of
monperrus/crawler-user-agents, MIT; browsers.json: real browsers from
ua-parser/uap-core's test resources, Apache-2.0).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from edge.tracker import useragent
from edge.tracker.useragent import DeviceInfo, classify

DATA = Path(__file__).resolve().parents[3] / "shared" / "useragents"

MIN_BOTS_FLAGGED = 0.97
MAX_BROWSERS_FLAGGED = 0.001

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
    path = DATA / f"{name}.json"
    # Deliberately a failure, not a skip: without the data the figures are unproven.
    assert path.is_file(), f"missing shared test data {path}"
    agents = json.loads(path.read_text(encoding="utf-8"))["user_agents"]
    assert agents, f"{path} has no user_agents"
    return [str(a) for a in agents]


def test_bot_detection_rates_on_shared_data() -> None:
    bots, browsers = _load("bots"), _load("browsers")
    missed = [ua for ua in bots if not classify(ua).is_bot]
    wrongly = [ua for ua in browsers if classify(ua).is_bot]
    bots_rate = 1 - len(missed) / len(bots)
    browsers_rate = len(wrongly) / len(browsers)
    print(
        f"\nbots flagged: {bots_rate:.2%} ({len(bots) - len(missed)}/{len(bots)}); "
        f"browsers wrongly flagged: {browsers_rate:.3%} ({len(wrongly)}/{len(browsers)}); "
        f"backend: {useragent.BACKEND}"
    )
    assert bots_rate >= MIN_BOTS_FLAGGED, missed[:20]
    assert browsers_rate <= MAX_BROWSERS_FLAGGED, wrongly


def test_bots_have_bot_device_type() -> None:
    for ua in _load("bots")[:200]:
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
    agents = _load("browsers")[:2000]
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
