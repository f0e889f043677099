"""The admin API, page and privacy duties against real server processes."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
import yaml

from edge.config.sites import load_site
from edge.core.experiment import newcombe
from edge.core.stats import StatUpdate, day_of
from edge.stores.stats import RedisStats
from tests.client import Visitor, new_id
from tests.helpers import PROFILES, ROOT, EdgeServer, RedisServer, edge_server

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PAGE = "http://127.0.0.1/demo"
FAST = {"EDGE_MAX_MESSAGES_PER_S": "100000", "EDGE_ADMIN_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo site plus a campaign whose coupons come from a pool."""
    folder = tmp_path_factory.mktemp("profiles")
    site = folder / "demo"
    shutil.copytree(PROFILES / "demo", site)
    (site / "coupons").mkdir()
    (site / "coupons" / "launch.txt").write_text("\n".join(f"L-{i:03d}" for i in range(50)))
    config = yaml.safe_load((site / "campaigns.yaml").read_text())
    config["campaigns"].append(
        {
            "id": "launch",
            "placement": "popup",
            "trigger": {"exit_intent": True},
            "widget": {
                "kind": "coupon",
                "headline": "Launch offer",
                "coupon": {"source": "pool", "file": "launch.txt", "warn_below": 1},
            },
        }
    )
    (site / "campaigns.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture(scope="module")
def redis_url(redis: RedisServer) -> str:
    url = redis.url.replace("/0", "/10")
    redis_sync.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def on_redis(redis_url: str, profiles: Path) -> Iterator[EdgeServer]:
    with edge_server(redis_url=redis_url, profiles=profiles, env=FAST) as server:
        yield server


@pytest.fixture(scope="module")
def embedded(profiles: Path) -> Iterator[EdgeServer]:
    with edge_server(profiles=profiles, env=FAST) as server:
        yield server


def keys_of(url: str, visitor: str) -> list[str]:
    client = redis_sync.Redis.from_url(url)
    return sorted(k.decode() for k in client.scan_iter(match=f"*{visitor}*", count=1000))


def api(server: EdgeServer, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {**AUTH, **kw.pop("headers", {})}
    return httpx.request(method, f"{server.http}{path}", headers=headers, timeout=10, **kw)


async def visit_and_claim(server: EdgeServer, visitor: str | None = None) -> tuple[Visitor, str]:
    """A visitor who views pages, identifies and gets a pool coupon."""
    tab = Visitor(server.ws, visitor=visitor)
    await tab.connect()
    await tab.track(tab.event("page_view", url=PAGE), tab.event("product_view", sku="LMP-01"))
    answers = await tab.track(
        tab.event("identify", email="someone@example.com"),
        tab.event("widget", campaign="launch", variant="a", action="convert"),
    )
    [coupon] = [a for a in answers if a["type"] == "coupon"]
    return tab, coupon["code"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", "privacy", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        env=env,
    )


# --- auth --------------------------------------------------------------------


def test_without_a_token_the_admin_api_does_not_exist() -> None:
    with edge_server(env={"EDGE_ADMIN_TOKEN": ""}) as server:
        for path in ("/admin/", "/admin/sites/demo/campaigns"):
            assert httpx.get(f"{server.http}{path}", headers=AUTH).status_code == 404
        assert httpx.post(f"{server.http}/admin/reload", headers=AUTH).status_code == 404


def test_a_wrong_or_missing_token_is_refused(embedded: EdgeServer) -> None:
    url = f"{embedded.http}/admin/sites/demo/campaigns"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        answer = httpx.get(url, headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
    # The query token is for the page only.
    assert httpx.get(url, params={"token": TOKEN}).status_code == 401
    assert httpx.get(url, headers=AUTH).status_code == 200
    assert api(embedded, "GET", "/admin/sites/nowhere/campaigns").status_code == 404
    assert api(embedded, "GET", "/admin/sites/demo/visitors/not-an-id").status_code == 400
    assert api(embedded, "GET", "/admin/sites/demo/campaigns?days=0").status_code == 400


# --- statistics ----------------------------------------------------------------


async def test_campaign_statistics_and_the_ab_test(on_redis: EdgeServer, redis_url: str) -> None:
    site = load_site(PROFILES / "demo")
    stats = RedisStats(redis_sync.asyncio.Redis.from_url(redis_url))
    today = day_of(time.time(), site.timezone)
    yesterday = day_of(time.time() - 86400, site.timezone)
    long_ago = day_of(time.time() - 60 * 86400, site.timezone)
    fed = {  # arm -> field -> (today, yesterday)
        "a": {"impressions": (900, 700), "visitors": (600, 400), "clicks": (50, 30),
              "closes": (80, 70), "conversions": (30, 20), "clicked": (45, 35),
              "converted": (30, 20), "purchased": (35, 25), "orders": (40, 25),
              "revenue": (800.5, 500)},
        "holdout": {"impressions": (200, 100), "visitors": (100, 80), "purchased": (3, 2),
                    "orders": (3, 2)},
    }  # fmt: skip
    updates = [
        StatUpdate("cart-reminder", arm, name, day, amount)
        for arm, fields in fed.items()
        for name, pair in fields.items()
        for day, amount in zip((today, yesterday), pair, strict=True)
    ]
    updates.append(StatUpdate("cart-reminder", "a", "visitors", long_ago, 10_000))  # too old
    await stats.record("demo", updates)
    await stats._client.aclose()

    answer = api(on_redis, "GET", "/admin/sites/demo/campaigns", params={"days": 30})
    assert answer.status_code == 200
    report = answer.json()
    assert report["days"] == 30 and report["to"] == today
    [cart] = [c for c in report["campaigns"] if c["id"] == "cart-reminder"]
    a, holdout = cart["arms"]["a"], cart["arms"]["holdout"]
    assert (a["impressions"], a["visitors"], a["clicks"], a["closes"]) == (1600, 1000, 80, 150)
    assert (a["conversions"], a["purchased"], a["orders"], a["revenue"]) == (50, 60, 65, 1300.5)
    assert holdout["visitors"] == 180 and holdout["orders"] == 5
    test = cart["experiment"]
    assert (test["control"], test["attribution_days"]) == ("a", 3)  # profiles/demo
    assert test["maturing_from"] == day_of(time.time() - 3 * 86400, site.timezone)
    click = test["arms"]["a"]["click"]
    assert (click["count"], click["rate"]) == (80, 0.08)
    assert click["ci95"] == pytest.approx([0.06475, 0.09847], abs=1e-5)  # Wilson, 80 of 1000
    assert test["arms"]["holdout"]["click"] is None  # the holdout is shown nothing
    # The reminder against the holdout, on purchases: 6% of 1,000 against 5 of 180.
    [uplift] = test["comparisons"]
    assert (uplift["arm"], uplift["against"], uplift["metric"]) == ("a", "holdout", "purchase")
    assert uplift["difference"] == pytest.approx(0.06 - 5 / 180)
    assert uplift["ci95"] == pytest.approx(list(newcombe(60, 1000, 5, 180)))
    assert uplift["ci95"][0] < 0 < uplift["ci95"][1] and uplift["significant"] is False
    # 1,000 and 180 visitors where 80/20 expects 944 and 236: a sample ratio mismatch.
    srm = test["srm"]
    assert srm["observed"] == {"a": 1000, "holdout": 180}
    assert srm["expected"] == pytest.approx({"a": 944, "holdout": 236})
    assert srm["chi2"] == pytest.approx(56**2 / 944 + 56**2 / 236)
    assert srm["p_value"] < 0.001 and srm["mismatch"] is True
    days = {d["day"]: d for d in cart["daily"]}
    assert days[today] == {"day": today, "impressions": 900, "conversions": 30}
    # Campaigns without data have an empty answer.
    others = [c["experiment"] for c in report["campaigns"] if c["id"] != "cart-reminder"]
    assert all(e["comparisons"] == [] and e["srm"] is None for e in others)
    assert all(e["arms"]["a"]["visitors"] == 0 for e in others)
    # A shorter window leaves yesterday out.
    one_day = api(on_redis, "GET", "/admin/sites/demo/campaigns", params={"days": 1}).json()
    [cart] = [c for c in one_day["campaigns"] if c["id"] == "cart-reminder"]
    assert cart["arms"]["a"]["visitors"] == 600
    assert cart["experiment"]["arms"]["a"]["purchase"]["count"] == 35
    # The page says the same, and warns.
    html = api(on_redis, "GET", "/admin/").text
    assert "Sample ratio mismatch" in html and "a 1000" in html and "(expected 944)" in html
    assert "8.00% (6.47% to 9.85%)" in html  # the click-through rate with its interval
    assert "+3.22 pp (" in html  # the difference against the holdout


def test_the_page_shows_each_campaign_with_a_chart(on_redis: EdgeServer) -> None:
    assert httpx.get(f"{on_redis.http}/admin/").status_code == 401
    answer = httpx.get(f"{on_redis.http}/admin/", params={"token": TOKEN})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["referrer-policy"] == "no-referrer"
    html = answer.text
    assert html.count("<svg") >= 2
    assert "cart-reminder" in html and "<rect" in html
    assert TOKEN not in html
    assert api(on_redis, "GET", "/admin/").status_code == 200  # the header works too


# --- privacy -------------------------------------------------------------------


async def test_export_returns_the_profile_and_coupons(on_redis: EdgeServer) -> None:
    tab, code = await visit_and_claim(on_redis)
    await tab.close()
    answer = api(on_redis, "GET", f"/admin/sites/demo/visitors/{tab.visitor}")
    assert answer.status_code == 200
    data = answer.json()
    assert data["visitor"] == tab.visitor
    assert data["profile"]["visitor"] == tab.visitor
    assert data["profile"]["_v"] >= 1
    assert "LMP-01" in str(data["profile"])
    assert data["coupons"] == {"launch": code}
    unknown = api(on_redis, "GET", f"/admin/sites/demo/visitors/{new_id()}")
    assert unknown.status_code == 404


async def test_erasure_removes_every_key_and_stays_erased(
    on_redis: EdgeServer, redis_url: str
) -> None:
    tab, code = await visit_and_claim(on_redis)
    visitor = tab.visitor
    assert f"edge:p:{{demo:{visitor}}}" in keys_of(redis_url, visitor)
    # The tab stays open: its profile is hot in the server while erased.
    answer = api(on_redis, "DELETE", f"/admin/sites/demo/visitors/{visitor}")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["profile"] is True and report["coupons"] == ["launch"]
    assert report["hot_copy"] is True

    def only_the_tombstone() -> None:
        assert keys_of(redis_url, visitor) == [f"edge:gone:{{demo:{visitor}}}"]
        given = redis_sync.Redis.from_url(redis_url).hgetall("edge:cp:{cp:demo:launch}:given")
        assert visitor.encode() not in given and code.encode() not in given.values()

    only_the_tombstone()
    # The open tab goes on sending, and a browser resends its queued events
    # (same ids) on a new connection: nothing comes back.
    await tab.track(tab.event("page_view", url=PAGE))
    await tab.close()
    again = Visitor(on_redis.ws, visitor=visitor, session=tab.session)
    await again.connect()
    await again.track(
        again.event("page_view", url=PAGE),
        again.event("product_view", sku="LMP-01"),
        again.event("identify", email="someone@example.com"),
    )
    await again.close()
    await asyncio.sleep(0.3)
    only_the_tombstone()
    assert api(on_redis, "GET", f"/admin/sites/demo/visitors/{visitor}").status_code == 404
    # Erasing again is harmless.
    second = api(on_redis, "DELETE", f"/admin/sites/demo/visitors/{visitor}").json()
    assert second["profile"] is False and second["coupons"] == []


async def test_erasure_on_the_embedded_store(embedded: EdgeServer) -> None:
    tab, _ = await visit_and_claim(embedded)
    await tab.close()
    path = f"/admin/sites/demo/visitors/{tab.visitor}"
    assert api(embedded, "GET", path).status_code == 200
    report = api(embedded, "DELETE", path).json()
    assert report["profile"] is True and report["coupons"] == ["launch"]
    again = Visitor(embedded.ws, visitor=tab.visitor)
    await again.connect()
    await again.track(again.event("page_view", url=PAGE))
    await again.close()
    assert api(embedded, "GET", path).status_code == 404


async def test_cli_erase_and_export_on_redis(
    on_redis: EdgeServer, redis_url: str, profiles: Path
) -> None:
    tab, code = await visit_and_claim(on_redis)
    await tab.close()
    where = ["--site", "demo", "--visitor", tab.visitor, "--redis", redis_url]
    where += ["--profiles", str(profiles)]
    exported = await asyncio.to_thread(run_cli, "export", *where)
    assert exported.returncode == 0, exported.stderr
    assert code in exported.stdout and tab.visitor in exported.stdout
    erased = await asyncio.to_thread(run_cli, "erase", *where)
    assert erased.returncode == 0, erased.stderr
    assert keys_of(redis_url, tab.visitor) == [f"edge:gone:{{demo:{tab.visitor}}}"]
    # The embedded store is only reachable through the server.
    bare = {"PATH": "/usr/bin:/bin"}
    embedded_only = await asyncio.to_thread(
        run_cli, "erase", "--site", "demo", "--visitor", tab.visitor, env=bare
    )
    assert embedded_only.returncode == 2
    assert "admin API" in embedded_only.stderr


async def test_cli_erase_through_the_server(embedded: EdgeServer) -> None:
    tab, _ = await visit_and_claim(embedded)
    await tab.close()
    erased = await asyncio.to_thread(
        run_cli,
        "erase",
        *("--site", "demo", "--visitor", tab.visitor, "--server", embedded.http),
        env={"PATH": "/usr/bin:/bin", "EDGE_ADMIN_TOKEN": TOKEN},
    )
    assert erased.returncode == 0, erased.stderr
    assert '"profile": true' in erased.stdout
    path = f"/admin/sites/demo/visitors/{tab.visitor}"
    assert api(embedded, "GET", path).status_code == 404


# --- explain and reload -----------------------------------------------------------


async def test_explain_for_a_stored_visitor(on_redis: EdgeServer) -> None:
    tab = Visitor(on_redis.ws)
    await tab.connect()
    await tab.track(*(tab.event("page_view", url=PAGE) for _ in range(3)))
    await tab.close()
    answer = api(
        on_redis,
        "GET",
        "/admin/sites/demo/explain",
        params={"visitor": tab.visitor, "page": PAGE, "trigger": "exit_intent"},
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["stored"] is True and report["visitor"] == tab.visitor
    assert report["trigger"] == "exit_intent"
    assert report["trace"] and all(isinstance(line, str) for line in report["trace"])
    assert any("welcome-coupon" in line for line in report["trace"])
    assert report["attributes"]["visitor"]["pageviews"] >= 3
    missing = api(on_redis, "GET", "/admin/sites/demo/explain", params={"visitor": tab.visitor})
    assert missing.status_code == 400


def test_reload_reports_problems_per_site(tmp_path: Path) -> None:
    shutil.copytree(PROFILES / "demo", tmp_path / "demo")
    env = {"EDGE_ADMIN_TOKEN": TOKEN, "EDGE_RELOAD_INTERVAL_S": "0"}
    with edge_server(profiles=tmp_path, env=env) as server:
        first = api(server, "POST", "/admin/reload").json()
        assert first["changed"] is False and first["sites"]["demo"]["problems"] == []
        (tmp_path / "broken").mkdir()
        (tmp_path / "broken" / "site.yaml").write_text("site: {id: 7, nonsense: true}\n")
        answer = api(server, "POST", "/admin/reload")
        assert answer.status_code == 200
        report = answer.json()
        assert report["changed"] is True
        assert report["sites"]["broken"]["version"] is None
        assert report["sites"]["broken"]["problems"]
        assert report["sites"]["demo"]["problems"] == []
