"""The ``edge`` command: check, explain, schema, and serve's refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.cli import main
from edge.config.sites import load_site, site_config_schema
from edge.decisioning.config import IntelligenceConfig
from tests.cluster import RedisClusterServers
from tests.helpers import PROFILES, ROOT, RedisServer


def test_check_passes_on_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(PROFILES)]) == 0
    assert "ok    demo" in capsys.readouterr().out


def test_check_lists_every_problem_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(PROFILES / "demo", tmp_path / "demo")
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "site.yaml").write_text("site:\n  id: broken\n  timezone: Mars/Olympus\n  colour: red\n")
    assert main(["check", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "ok    demo" in captured.out
    errors = captured.err.splitlines()
    assert f"error {bad / 'site.yaml'}:3: site.timezone: unknown time zone 'Mars/Olympus'" in errors
    assert f"error {bad / 'site.yaml'}:4: site.colour: unknown key 'colour'" in errors


def test_check_accepts_one_site_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``edge check profiles/demo`` checks that site alone; it once took the
    site folder for a profiles folder (``error profiles/demo/templates: no
    *.yaml files``). A broken sibling site is not its business."""
    shutil.copytree(PROFILES / "demo", tmp_path / "demo")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "site.yaml").write_text("site:\n  id: broken\n  colour: red\n")
    assert main(["check", str(tmp_path / "demo")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("ok    demo (configuration ")
    assert "error" not in captured.err
    assert main(["check", str(tmp_path / "broken")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"error {tmp_path / 'broken' / 'site.yaml'}:3: site.colour: unknown key" in captured.err
    monkeypatch.chdir(tmp_path / "demo")
    assert main(["check", "."]) == 0
    assert capsys.readouterr().out.startswith("ok    demo (configuration ")


def test_schema_file_is_current() -> None:
    committed = json.loads((PROFILES / "schema.json").read_text())
    assert committed == site_config_schema(), "run: edge schema --output profiles/schema.json"


def write_profile(path: Path, **fields: object) -> Path:
    path.write_text(json.dumps(fields))
    return path


def test_explain_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = write_profile(
        tmp_path / "v.json",
        pageviews=1,
        visits=1,
        session=[0, 0, None, None, "direct", "none", None, None, None, 1, []],
    )
    code = main(
        [
            "explain",
            "--profiles",
            str(PROFILES),
            "--site",
            "demo",
            "--profile",
            str(profile),
            "--page",
            "http://127.0.0.1:8000/demo",
            "--trigger",
            "exit_intent",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "campaign welcome-coupon: audience failed at session.pageviews ($gte 3, was 1)" in out
    assert "nothing to show" in out


def test_explain_json_lists_decisions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = write_profile(
        tmp_path / "v.json",
        pageviews=4,
        visits=1,
        session=[0, 0, None, None, "direct", "none", None, None, None, 4, []],
    )
    assert (
        main(
            [
                "explain",
                "--profiles",
                str(PROFILES),
                "--site",
                "demo",
                "--profile",
                str(profile),
                "--page",
                "http://127.0.0.1:8000/demo",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    shown = {item["campaign"]: item["trigger"]["type"] for item in report["decisions"]}
    assert shown == {"welcome-coupon": "exit_intent", "bestsellers": "page_view"}
    assert report["attributes"]["session"]["pageviews"] == 4


def test_explain_unknown_site_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--profiles", str(PROFILES), "--site", "nope", "--page", "/"]) == 1
    assert "no such site folder" in capsys.readouterr().err


def test_serve_refuses_workers_without_redis() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge", "serve", "--workers", "2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--workers above 1 needs --redis" in result.stderr


# --- edge rfm propose ------------------------------------------------------------

RFM_NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC


def store_customers(
    url: str, site_id: str, buyers: int, browsers: int, *, flush: bool = True
) -> None:
    """Profiles built by the real ``apply`` from purchase events (and page views
    for the visitors who never bought), stored in Redis."""
    import asyncio
    import random

    from edge.config.sites import load_site
    from edge.core.context import VisitContext
    from edge.core.updates import apply
    from edge.stores.base import Write
    from edge.stores.redis import RedisStore
    from edge.tracker.protocol import parse_event
    from tests.client import new_id

    site = load_site(PROFILES / "demo")
    rng = random.Random(11)
    writes = []
    for n in range(buyers + browsers):
        visitor = new_id()
        ctx = VisitContext(visitor, new_id())
        orders = 0 if n >= buyers else rng.choice([1, 1, 1, 2, 2, 3, 5, 8])
        last = RFM_NOW - rng.uniform(0, 600) * 86400
        profile = None
        for i in range(max(1, orders)):
            at = last - (orders - 1 - i) * 20 * 86400
            raw = (
                {"type": "purchase", "order_id": f"o-{n}-{i}", "items": [], "currency": "EUR"}
                | {"value": round(rng.uniform(10, 400), 2)}
                if orders
                else {"type": "page_view", "url": "http://127.0.0.1:8000/demo"}
            )
            event = parse_event({"seq": i + 1, "id": f"ev-{n:05d}-{i:03d}", **raw})
            profile = apply(profile, event, ctx, site, at)
        assert profile is not None and profile.orders == orders
        writes.append(Write(site_id, visitor, 0, profile, None))

    async def commit() -> None:
        store = RedisStore.from_url(url)
        if flush:
            await store.client.flushdb()
        assert await store.commit(writes) == [None] * len(writes)
        await store.close()

    asyncio.run(commit())


def propose(url: str, site: str = "demo", *more: str) -> int:
    now = "2027-01-15T08:00:00+00:00"
    return main(["rfm", "propose", "--site", site, "--redis", url, "--now", now, *more])


def test_rfm_propose_prints_yaml_the_site_loads(
    redis: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = redis.url.replace("/0", "/4")
    store_customers(url, "demo", buyers=300, browsers=120)
    assert propose(url) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # enough customers, every score used
    proposal = yaml.safe_load(captured.out)
    assert "quintiles of 300 profiles with orders (420 profiles read)" in captured.out
    # pasted into the demo's own site.yaml, it loads, and the site scores with it
    shutil.copytree(PROFILES / "demo", tmp_path / "demo")
    site_file = tmp_path / "demo" / "site.yaml"
    config = yaml.safe_load(site_file.read_text())
    config["intelligence"]["rfm"] = proposal["intelligence"]["rfm"]
    site_file.write_text(yaml.safe_dump(config, allow_unicode=True))
    site = load_site(tmp_path / "demo")
    rfm = proposal["intelligence"]["rfm"]
    assert list(site.intelligence.recency_days) == rfm["recency_days"]
    assert list(site.intelligence.frequency) == rfm["frequency"]
    assert list(site.intelligence.monetary) == rfm["monetary"]
    assert rfm["frequency"][0] == 2  # one order is f 1, whatever the ties


def test_rfm_propose_warns_when_few_customers(
    redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = redis.url.replace("/0", "/4")
    store_customers(url, "demo", buyers=12, browsers=3)
    assert propose(url) == 0
    captured = capsys.readouterr()
    assert "warning: only 12 profiles with orders (fewer than 100)" in captured.err
    assert yaml.safe_load(captured.out)["intelligence"]["rfm"]["recency_days"]
    assert propose(url, "demo", "--min-customers", "10") == 0
    assert "only 12" not in capsys.readouterr().err


def test_rfm_propose_without_buyers_proposes_nothing(
    redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = redis.url.replace("/0", "/4")
    store_customers(url, "demo", buyers=0, browsers=7)
    assert propose(url) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no profile of site demo has orders (7 profiles read)" in captured.err
    assert propose(url, "other") == 1  # another site's profiles are not read
    assert "(0 profiles read)" in capsys.readouterr().err


def test_rfm_propose_needs_redis(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("EDGE_REDIS_URL", raising=False)
    assert main(["rfm", "propose", "--site", "demo"]) == 2
    err = capsys.readouterr().err
    assert "no Redis store given (--redis URL or EDGE_REDIS_URL)" in err
    assert "embedded store" in err
    assert main(["rfm", "propose", "--site", "../x", "--redis", "redis://127.0.0.1:1/0"]) == 2
    assert "not a site id" in capsys.readouterr().err


def test_rfm_propose_on_a_redis_cluster(
    cluster: RedisClusterServers, capsys: pytest.CaptureFixture[str]
) -> None:
    site = "rfm-cluster"  # a site of its own: the cluster is shared by the session
    store_customers(cluster.url, site, buyers=150, browsers=10, flush=False)
    assert propose(cluster.url, site) == 0
    captured = capsys.readouterr()
    assert "quintiles of 150 profiles with orders (160 profiles read)" in captured.out
    rfm = IntelligenceConfig.model_validate(yaml.safe_load(captured.out)["intelligence"]).rfm
    assert rfm.recency_days == sorted(set(rfm.recency_days))


@pytest.mark.parametrize("kind", ["redis", "cluster"])
def test_segments_refresh_backfills_membership_on_redis(
    kind: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    """Profiles stored before high-value was kept enter it by the backfill,
    through compare-and-set, with one segment_entered each on the stream; a
    second run changes nothing."""
    import asyncio

    from edge.core.automation import AutomationEvent
    from edge.core.profile import Profile
    from edge.stores import keys
    from edge.stores.base import Write
    from edge.stores.redis import RedisStore

    if kind == "redis":
        url = request.getfixturevalue("redis").url.replace("/0", "/7")
    else:
        url = request.getfixturevalue("cluster").url
    site = "seg" + kind
    big, small = "a1" * 16, "b2" * 16

    async def setup() -> None:
        store = RedisStore.from_url(url)
        try:
            await store.client.delete(keys.automation_stream(site))
            for visitor in (big, small):
                await store.erase(site, visitor)
            writes = [
                Write(site, v, 0, Profile(visitor=v, created_at=1.0, orders=1, revenue=r), None)
                for v, r in ((big, 350.0), (small, 20.0))
            ]
            assert await store.commit(writes) == [None, None]
        finally:
            await store.close()

    async def stored() -> tuple[list[str], list[AutomationEvent]]:
        store = RedisStore.from_url(url)
        try:
            loaded = await store.load(site, big)
            assert loaded is not None
            entries = await store.client.xrange(keys.automation_stream(site))
            events = [AutomationEvent.from_fields(fields) for _, fields in entries]
            return [m.id for m in loaded.profile.segments], events
        finally:
            await store.close()

    asyncio.run(setup())
    profiles = Path(request.getfixturevalue("tmp_path"))
    shutil.copytree(PROFILES / "demo", profiles / site)
    site_file = profiles / site / "site.yaml"
    site_file.write_text(site_file.read_text().replace("id: demo", f"id: {site}"))
    args = ["segments", "refresh", "--site", site, "--redis", url, "--profiles", str(profiles)]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == {
        "site": site,
        "profiles_read": 2,
        "changed": 1,
    }
    segments, events = asyncio.run(stored())
    assert segments == ["high-value"]
    assert [(e.type, e.visitor, dict(e.payload)) for e in events] == [
        ("segment_entered", big, {"segment": "high-value"})
    ]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["changed"] == 0
    assert len(asyncio.run(stored())[1]) == 1


def test_segments_refresh_without_a_store_points_to_the_server(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGE_REDIS_URL", raising=False)
    assert main(["segments", "refresh", "--site", "demo"]) == 2
    assert "--server" in capsys.readouterr().err
