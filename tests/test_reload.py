"""Hot reload against a running server: good, then bad, then good again."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

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
