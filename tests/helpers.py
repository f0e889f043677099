"""Real parts for tests: a redis-server on a free port, an edge server process."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "profiles"


def demo_without_campaigns(folder: Path, campaigns: str | None = None) -> Path:
    """A profiles folder holding the demo shop without its campaigns and
    segments (widget reports would add events of their own), or with
    ``campaigns`` as its campaigns.yaml; returns ``folder``."""
    shutil.copytree(
        PROFILES / "demo",
        folder / "demo",
        ignore=shutil.ignore_patterns("campaigns.yaml", "segments.yaml"),
    )
    if campaigns is not None:
        (folder / "demo" / "campaigns.yaml").write_text(campaigns)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, subprocess.CalledProcessError, ValueError):
            if predicate():  # type: ignore[operator]
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout_s}s")


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], check=True, capture_output=True, timeout=10
        )
        return out.stdout.decode().strip()


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (./dev test installs it)")
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                folder,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = RedisServer(port, process)
        try:
            wait_until(lambda: server.cli("ping") == "PONG", 10, "redis-server")
            yield server
        finally:
            process.terminate()
            process.wait(10)


@dataclass
class EdgeServer:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def edge_server(
    *,
    redis_url: str | None = None,
    profiles: Path = PROFILES,
    workers: int = 1,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[EdgeServer]:
    port = port or free_port()
    args = [
        sys.executable,
        "-m",
        "edge",
        "serve",
        "--port",
        str(port),
        "--profiles",
        str(profiles),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    if redis_url:
        args += ["--redis", redis_url]
    full_env = {
        **os.environ,
        "EDGE_RELOAD_INTERVAL_S": "0.2",
        "EDGE_DEMO_SECRET": "test-secret",
        # Per-address limits off: every test client is 127.0.0.1, and tests
        # run fast. tests/tracker/test_limits.py turns them on.
        "EDGE_MAX_CONNECTIONS_PER_ADDRESS": "0",
        "EDGE_MAX_MESSAGES_PER_S_PER_ADDRESS": "0",
        **(env or {}),
    }
    with tempfile.NamedTemporaryFile(prefix="edge-server-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT
        )
    server = EdgeServer(port, process, log_path)
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"edge server exited:\n{server.output()}")
            with urllib.request.urlopen(f"{server.http}/healthz", timeout=1) as answer:
                return bool(answer.status == 200)

        wait_until(healthy, 20, "edge server")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log_path.unlink(missing_ok=True)
