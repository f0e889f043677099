"""Hot reload against a running server: good, then bad, then good again."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.client import Visitor
from tests.helpers import PROFILES, edge_server, wait_until

PAGE = "http://127.0.0.1/demo"


def health(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:
        data: dict[str, Any] = json.loads(answer.read())
        return data


async def decided(ws_base: str) -> list[str]:
    visitor = Visitor(ws_base)
    await visitor.connect()
    answers = await visitor.track(visitor.event("page_view", url=PAGE))
    await visitor.close()
    return [item["campaign"] for item in answers[-1]["items"]]


def rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    later = time.time() + 1  # a new mtime even on a coarse-grained file system
    os.utime(path, (later, later))


async def test_good_bad_good_keeps_serving(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    shutil.copytree(PROFILES / "demo", profiles / "demo")
    campaigns = profiles / "demo" / "campaigns.yaml"
    with edge_server(profiles=profiles) as server:
        first = health(server.http)["sites"]["demo"]["version"]
        assert await decided(server.ws) == ["bestsellers"]

        # Bad: a typo in an operator. The old configuration keeps serving.
        rewrite(campaigns, "session.pageviews: {$gte: 3}", "session.pageviews: {$gtee: 3}")
        wait_until(lambda: health(server.http)["sites"]["demo"]["problems"], 10, "problem")
        report = health(server.http)["sites"]["demo"]
        assert report["version"] == first
        assert len(report["problems"]) == 1
        assert (
            "campaigns.yaml:13: campaigns[0].audience['session.pageviews'].$gtee: "
            "unknown operator '$gtee'" in report["problems"][0]
        )
        assert await decided(server.ws) == ["bestsellers"]

        # Good again, with a visible change: the cold-start block is paused.
        rewrite(campaigns, "{$gtee: 3}", "{$gte: 3}")
        rewrite(
            campaigns,
            "    name: Bestsellers (cold start)\n",
            "    name: Bestsellers (cold start)\n    status: paused\n",
        )
        wait_until(lambda: health(server.http)["sites"]["demo"]["version"] != first, 10, "reload")
        assert health(server.http)["sites"]["demo"]["problems"] == []
        assert await decided(server.ws) == []


def widget_at(campaigns: Path, campaign: str) -> tuple[int, int]:
    """The index of a campaign in a copy of the demo's campaigns.yaml, and the
    line of its ``widget:`` (the demo changes; these tests are not about it)."""
    lines = campaigns.read_text().splitlines()
    start = lines.index(f"  - id: {campaign}")
    index = sum(1 for line in lines[:start] if line.startswith("  - id: "))
    return index, next(i for i in range(start, len(lines)) if lines[i].strip() == "widget:") + 1


def builtin_banners(campaigns: Path) -> tuple[str, ...]:
    """The campaigns of a copy of the demo's campaigns.yaml whose widgets are
    banners on the built-in template (``banner.html``), in file order: the
    ones a site's own ``templates/banner.html`` replaces."""
    config = yaml.safe_load(campaigns.read_text())

    def widgets(campaign: dict[str, Any]) -> list[dict[str, Any]]:
        arms = [v.get("widget") or {} for v in campaign.get("variants", [])]
        return [campaign.get("widget") or {}, *arms]

    return tuple(
        c["id"]
        for c in config["campaigns"]
        if any(w.get("kind") == "banner" and "template" not in w for w in widgets(c))
    )


BILLION_LAUGHS = "\n".join(
    ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
)


async def test_bombs_are_problems_and_the_last_good_configuration_keeps_serving(
    tmp_path: Path,
) -> None:
    profiles = tmp_path / "profiles"
    shutil.copytree(PROFILES / "demo", profiles / "demo")
    demo = profiles / "demo"
    with edge_server(profiles=profiles) as server:
        first = health(server.http)["sites"]["demo"]["version"]

        # An alias bomb: refused at once, with file and line; /healthz answers
        # throughout (health() gives each request 2 s).
        bomb = demo / "bomb.yaml"
        bomb.write_text(BILLION_LAUGHS + "\n")
        wait_until(lambda: health(server.http)["sites"]["demo"]["problems"], 10, "problem")
        report = health(server.http)
        assert report["sites"]["demo"] == {
            "version": first,
            "problems": [
                f"{bomb}:6: stands for more than 200000 values once its aliases are expanded"
            ],
            "coupons": report["sites"]["demo"]["coupons"],
        }
        assert report["config"] == {"last_reload": "ok", "error": None}
        assert await decided(server.ws) == ["bestsellers"]

        # A template that raises OverflowError (past Jinja's own errors), for
        # both hero banners.
        bomb.unlink()
        (demo / "templates").mkdir(exist_ok=True)  # the demo has templates of its own
        (demo / "templates" / "banner.html").write_text(
            "{% for x in range(1000000) %}x{% endfor %}"
        )
        banners = builtin_banners(demo / "campaigns.yaml")
        assert len(banners) >= 2
        wait_until(
            lambda: len(health(server.http)["sites"]["demo"]["problems"]) == len(banners),
            10,
            "problems",
        )
        report = health(server.http)["sites"]["demo"]
        assert report["version"] == first
        for campaign, problem in zip(banners, report["problems"], strict=True):
            index, line = widget_at(demo / "campaigns.yaml", campaign)
            assert problem.startswith(f"{demo / 'campaigns.yaml'}:{line}: ")
            assert f"campaigns[{index}].widget: template: TemplateLimit: range() of more" in problem
        assert await decided(server.ws) == ["bestsellers"]

        # Fixed, with a visible change: picked up on the next interval.
        (demo / "templates" / "banner.html").unlink()
        rewrite(
            demo / "campaigns.yaml",
            "    name: Bestsellers (cold start)\n",
            "    name: Bestsellers (cold start)\n    status: paused\n",
        )
        wait_until(lambda: health(server.http)["sites"]["demo"]["version"] != first, 10, "reload")
        assert health(server.http)["sites"]["demo"]["problems"] == []
        assert await decided(server.ws) == []
