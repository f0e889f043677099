"""The ``edge`` command: check, explain, schema, and serve's refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli import main
from edge.sites import site_config_schema
from tests.helpers import PROFILES, ROOT


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
