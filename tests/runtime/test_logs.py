"""Log lines cannot be forged: control characters escaped, tokens redacted,
JSON lines on request; unit-level and in a real server's output."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest

from edge.runtime.logs import JsonFormatter, SafeFormatter, clean, escape, log_config
from tests.helpers import PROFILES, edge_server

EVIL = "GET /x\r\n2030-01-01 00:00:00,000 INFO edge: forged\x1b[2J\x00\x85\u2028end"


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nINFO forged by an exception")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("edge.test", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_escape_writes_every_control_character_visibly() -> None:
    assert escape("a\r\nb\tc") == "a\\r\\nb\\tc"
    assert escape("\x1b[31m\x00\x7f\x85\x9f") == "\\x1b[31m\\x00\\x7f\\x85\\x9f"
    assert escape("\u2028\u2029") == "\\u2028\\u2029"
    assert escape("zażółć ✓") == "zażółć ✓"  # printable text stays as it is
    for code in [*range(0x20), *range(0x7F, 0xA0)]:
        assert chr(code) not in escape(f"x{chr(code)}y")


def test_the_text_format_keeps_one_record_on_one_line() -> None:
    line = SafeFormatter().format(record("request %s from %r", EVIL, EVIL))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\x85" not in line
    assert "\\r\\n2030-01-01" in line and "\\x1b[2J" in line
    assert line.count("forged") == 2  # both argument and repr are there, escaped


def test_a_message_itself_is_escaped_too() -> None:
    line = SafeFormatter().format(record(EVIL))
    assert "\n" not in line and "\\n2030" in line


def test_tracebacks_cannot_pass_for_records() -> None:
    text = SafeFormatter().format(record("failed %s", "x\ny", exc=True))
    first, *rest = text.split("\n")
    assert first.endswith("failed x\\ny")
    assert rest and all(line.startswith("    ") for line in rest)


def test_tokens_are_redacted() -> None:
    assert "s3cret" not in clean("GET /admin/?token=s3cret&x=1 HTTP/1.1")
    assert "token=[redacted]&x=1" in clean("GET /admin/?token=s3cret&x=1")
    assert "s3cret" not in clean("Authorization: Bearer s3cret")


def test_json_lines() -> None:
    line = JsonFormatter().format(record("request %s", EVIL, exc=True))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "warning" and entry["logger"] == "edge.test"
    assert entry["message"].startswith("request GET /x\\r\\n2030")
    assert "\x1b" not in entry["message"]
    assert "ValueError: boom" in entry["exc"]
    assert entry["ts"].endswith("Z")


def test_log_config_routes_uvicorn_through_the_formatter() -> None:
    config = log_config("warning", json_lines=True)
    assert config["handlers"]["default"]["formatter"] == "json"
    assert config["loggers"]["uvicorn.access"]["propagate"] is True
    assert config["root"]["level"] == "WARNING"


@pytest.fixture
def evil_profiles(tmp_path: Path) -> Path:
    """A site folder whose name forges a log line (it appears in the error)."""
    shutil.copytree(PROFILES / "demo", tmp_path / "demo")
    bad = tmp_path / "bad\r\n2030-01-01 00:00:00,000 INFO edge: forged\x1b[2J"
    bad.mkdir()
    (bad / "site.yaml").write_text("site: {nonsense: true}\n")
    return tmp_path


@pytest.mark.parametrize("json_lines", [False, True])
def test_server_log_lines(evil_profiles: Path, json_lines: bool) -> None:
    env = {"EDGE_LOG_JSON": "1"} if json_lines else {}
    with edge_server(profiles=evil_profiles, env=env) as server:
        output = server.output()
    lines = [line for line in output.splitlines() if "invalid configuration" in line]
    assert len(lines) == 1, output
    assert "\x1b" not in output
    assert not any(line.startswith("2030-01-01") for line in output.splitlines())
    if json_lines:
        entry = json.loads(lines[0])
        assert entry["level"] == "error" and "\\r\\n2030-01-01" in entry["message"]
    else:
        assert "site bad\\r\\n2030-01-01" in lines[0]
