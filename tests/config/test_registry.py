"""Configuration loading that no file can stop or freeze (edge/config/registry.py,
edge/app.py's watcher, ``edge check``): off the event loop, with a budget,
one reload at a time, every failure in /healthz, and retried."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edge.config.registry import SiteRegistry
from edge.config.sites import Site, load_site
from edge.errors import ConfigError
from tests.config.test_sites import GOOD, write_site
from tests.helpers import PROFILES, ROOT, edge_server, wait_until
from tests.test_reload import (
    BILLION_LAUGHS,
    builtin_banners,
    decided,
    health,
    rewrite,
    widget_at,
)

LOOPS = "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}"


# --- the registry: a reload over its budget ----------------------------------------------


async def test_a_reload_over_its_budget_is_reported_and_left_to_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = SiteRegistry(tmp_path)
    folder = write_site(tmp_path, {"site.yaml": GOOD})
    assert registry.reload() is True
    good = registry.get("shop")
    assert good is not None

    # A load that hangs (as on a file system that stopped answering).
    release = threading.Event()
    calls: list[Path] = []

    def stuck(path: Path) -> Site:
        calls.append(path)
        release.wait(30)
        return load_site(path)

    monkeypatch.setattr("edge.config.registry.load_site", stuck)
    (folder / "site.yaml").write_text(GOOD.replace("name: Shop", "name: Shop 2"))
    assert await registry.reload_in_background(0.05) is False
    late = registry.overdue()
    assert late is not None
    assert late[0] == "shop"
    assert late[1].startswith(f"{folder}: configuration reload still running after ")
    assert late[1].endswith("(budget 0.05 s); the last good configuration is served")
    problems, config = registry.report()
    assert problems == {"shop": [late[1]]}
    assert config == {"last_reload": "overdue", "error": late[1]}
    assert registry.get("shop") is good

    # One at a time: no second thread, and a direct reload refuses at once.
    assert await registry.reload_in_background(0.05) is False
    with pytest.raises(ConfigError, match="a configuration reload is still running"):
        registry.reload()
    assert calls == [folder]

    # It finishes when it can, and what it read is applied.
    release.set()
    wait_until(lambda: registry.overdue() is None, 10, "the reload thread")
    wait_until(lambda: registry.get("shop") is not good, 10, "the new site")
    site = registry.get("shop")
    assert site is not None
    assert site.name == "Shop 2"
    assert registry.report() == ({}, {"last_reload": "ok", "error": None})
    assert await registry.reload_in_background(5) is False  # nothing changed since


async def test_a_reload_in_background_passes_a_failure_on(tmp_path: Path) -> None:
    registry = SiteRegistry(tmp_path / "missing")
    with pytest.raises(ConfigError, match="profiles folder not found"):
        await registry.reload_in_background(5)
    assert registry.report()[1] == {
        "last_reload": "failed",
        "error": f"{tmp_path / 'missing'}: profiles folder not found",
    }


# --- a running server ------------------------------------------------------------------


def overdue(server_http: str) -> bool:
    report = health(server_http)
    problems = report["sites"]["demo"]["problems"]
    return report["config"]["last_reload"] == "overdue" and any(
        "configuration reload still running" in p for p in problems
    )


async def test_a_slow_reload_runs_off_the_event_loop_and_sigterm_still_stops_the_server(
    tmp_path: Path,
) -> None:
    profiles = tmp_path / "profiles"
    shutil.copytree(PROFILES / "demo", profiles / "demo")
    demo = profiles / "demo"
    env = {"EDGE_RELOAD_TIMEOUT_S": "0.1"}
    with edge_server(profiles=profiles, env=env) as server:
        first = health(server.http)["sites"]["demo"]["version"]
        # Runs until the template checks' budget (1 s) stops it: ten times the
        # reload budget. /healthz answers meanwhile and says so.
        (demo / "templates").mkdir(exist_ok=True)  # the demo has templates of its own
        (demo / "templates" / "banner.html").write_text(LOOPS)
        wait_until(lambda: overdue(server.http), 10, "an overdue reload in /healthz")
        assert health(server.http)["sites"]["demo"]["version"] == first
        wait_until(lambda: not overdue(server.http), 10, "the reload to end")
        report = health(server.http)
        assert report["config"] == {"last_reload": "ok", "error": None}
        assert report["sites"]["demo"]["version"] == first
        problems = report["sites"]["demo"]["problems"]
        # each banner on the slow template is reported as slow until the site's
        # whole template budget is spent; then one problem says the rest was not checked
        slow = [p for p in problems if "template: the check rendering took longer than" in p]
        rest = [p for p in problems if p not in slow]
        banners = builtin_banners(demo / "campaigns.yaml")
        assert 1 <= len(slow) <= len(banners)
        assert len(rest) <= 1 and (rest or len(slow) == len(banners)), problems
        assert all("not checked: the templates took more than" in p for p in rest)
        assert await decided(server.ws) == ["bestsellers"]

        # SIGTERM while a reload is over its budget: the server stops at once.
        rewrite(demo / "templates" / "banner.html", "9999", "9998")
        wait_until(lambda: overdue(server.http), 10, "an overdue reload in /healthz")
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(10)  # TimeoutExpired if it went on (it ignored SIGTERM before)


async def test_a_vanished_profiles_folder_is_shown_and_retried(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    shutil.copytree(PROFILES / "demo", profiles / "demo")
    with edge_server(profiles=profiles) as server:
        first = health(server.http)["sites"]["demo"]["version"]
        profiles.rename(tmp_path / "elsewhere")
        wait_until(
            lambda: health(server.http)["config"]["last_reload"] == "failed", 10, "a failure"
        )
        report = health(server.http)
        assert report["config"]["error"] == f"{profiles}: profiles folder not found"
        assert report["sites"]["demo"]["version"] == first  # still served
        assert await decided(server.ws) == ["bestsellers"]
        (tmp_path / "elsewhere").rename(profiles)
        wait_until(lambda: health(server.http)["config"]["last_reload"] == "ok", 10, "retry")
        assert health(server.http)["sites"]["demo"]["problems"] == []


# --- edge check --------------------------------------------------------------------------


def check(profiles: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", "check", str(profiles)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "EDGE_DEMO_SECRET": "test-secret"},
    )


def test_edge_check_reports_bombs_as_problem_lines(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    for name in ("laughs", "overflow", "loops", "huge"):
        shutil.copytree(PROFILES / "demo", profiles / name)
        rewrite(profiles / name / "site.yaml", "id: demo", f"id: {name}")
    (profiles / "laughs" / "bomb.yaml").write_text(BILLION_LAUGHS + "\n")
    for name, template in (
        ("overflow", "{% for x in range(10**6) %}{% endfor %}"),
        ("loops", LOOPS),
    ):
        (profiles / name / "templates").mkdir(exist_ok=True)
        (profiles / name / "templates" / "banner.html").write_text(template)
    huge = profiles / "huge" / "more.yaml"
    huge.write_text("# padding\n" * 200_000)

    result = check(profiles)  # TimeoutExpired if it does not end (as reported: > 25 s)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = result.stderr.splitlines()
    campaigns = {name: profiles / name / "campaigns.yaml" for name in ("overflow", "loops")}
    assert errors[0] == f"error {huge}: {huge.stat().st_size} bytes, more than the 1048576 " + (
        "bytes a configuration file may have (split it into several files)"
    )
    assert errors[1] == (
        f"error {profiles / 'laughs' / 'bomb.yaml'}:6: stands for more than 200000 values "
        "once its aliases are expanded"
    )
    of = {n: [e for e in errors if e.startswith(f"error {path}:")] for n, path in campaigns.items()}
    assert len(errors) == 2 + len(of["loops"]) + len(of["overflow"])
    # loops: each banner is slow until the site's template budget is spent; then
    # one line says the rest was not checked
    loops = [e for e in of["loops"] if "not checked: the templates took more than" not in e]
    not_checked = len(of["loops"]) - len(loops)
    assert not_checked <= 1
    assert not_checked or len(loops) == len(builtin_banners(campaigns["loops"]))
    for name, lines in (("loops", loops), ("overflow", of["overflow"])):
        for campaign, error in zip(builtin_banners(campaigns[name]), lines, strict=False):
            index, line = widget_at(campaigns[name], campaign)
            assert error.startswith(
                f"error {campaigns[name]}:{line}: campaigns[{index}].widget: template: "
            )
    assert loops and all("time budget" in e for e in loops)
    assert len(of["overflow"]) == len(builtin_banners(campaigns["overflow"]))
    assert all("TemplateLimit: range() of more than 10000 numbers" in e for e in of["overflow"])
    assert all(line.startswith("error ") for line in errors)
    assert result.stdout == ""
