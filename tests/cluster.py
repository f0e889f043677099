"""Real Redis topologies for tests: a 3-master Redis Cluster and a master
watched by one Sentinel, started from the installed redis-server on free ports.

Both are started once per session (see tests/conftest.py) and only when a
test asks for them.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster

from tests.helpers import free_port, wait_until

MASTERS = 3
SERVICE = "edge-master"


def _binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (./dev test installs it)")
    return binary


def _cli(port: int, *args: str, timeout_s: float = 10) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *args], check=True, capture_output=True, timeout=timeout_s
    )
    return out.stdout.decode().strip()


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10,000) is free and valid too."""
    for _ in range(200):
        port = random.randrange(20_000, 30_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _flags(**options: str) -> list[str]:
    """``--name value`` for each option (``_`` as ``-``), on loopback, no persistence."""
    options = {"bind": "127.0.0.1", "save": "", "appendonly": "no", **options}
    return [
        part for name, value in options.items() for part in (f"--{name.replace('_', '-')}", value)
    ]


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclass
class RedisClusterServers:
    ports: list[int]

    @property
    def url(self) -> str:
        """Two seed nodes, as an operator would list them."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]},127.0.0.1:{self.ports[1]}"

    def sync_client(self) -> RedisCluster:
        return RedisCluster(host="127.0.0.1", port=self.ports[0])

    def flush(self) -> None:
        for port in self.ports:
            _cli(port, "flushall")

    def cli(self, port: int, *args: str) -> str:
        """redis-cli on one node."""
        return _cli(port, *args)


@contextlib.contextmanager
def redis_cluster() -> Iterator[RedisClusterServers]:
    """Three masters, no replicas; ``cluster_state:ok`` before it is handed out."""
    binary = _binary()
    ports: list[int] = []
    while len(ports) < MASTERS:
        port = _cluster_port()
        if not {port, port + 10_000} & {p for q in ports for p in (q, q + 10_000)}:
            ports.append(port)
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="edge-cluster-") as folder:
        try:
            for port in ports:
                node = Path(folder) / str(port)
                node.mkdir()
                flags = _flags(
                    port=str(port),
                    cluster_enabled="yes",
                    cluster_config_file=str(node / "nodes.conf"),
                    dir=str(node),
                )
                processes.append(_start([binary, *flags], node / "redis.log"))
            for port in ports:
                wait_until(lambda port=port: _cli(port, "ping") == "PONG", 10, "cluster node")
            _cli(
                ports[0],
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
                timeout_s=60,
            )
            for port in ports:
                wait_until(
                    lambda port=port: "cluster_state:ok" in _cli(port, "cluster", "info"),
                    30,
                    "cluster state ok",
                )
            yield RedisClusterServers(ports)
        finally:
            _stop(processes)


@dataclass
class SentinelServers:
    master_port: int
    sentinel_port: int

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}/0"

    def master_cli(self, *args: str) -> str:
        return _cli(self.master_port, *args)


@contextlib.contextmanager
def redis_sentinel() -> Iterator[SentinelServers]:
    """One master and one Sentinel monitoring it (quorum 1)."""
    binary = _binary()
    master_port, sentinel_port = free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="edge-sentinel-") as folder:
        base = Path(folder)
        try:
            flags = _flags(port=str(master_port), dir=folder)
            processes.append(_start([binary, *flags], base / "master.log"))
            wait_until(lambda: _cli(master_port, "ping") == "PONG", 10, "sentinel's master")
            config = base / "sentinel.conf"  # Sentinel rewrites its file: it must be writable
            config.write_text(
                f"port {sentinel_port}\n"
                "bind 127.0.0.1\n"
                f"dir {folder}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 1\n"
                f"sentinel down-after-milliseconds {SERVICE} 5000\n"
            )
            processes.append(_start([binary, str(config), "--sentinel"], base / "sentinel.log"))
            expected = ["127.0.0.1", str(master_port)]

            def knows_master() -> bool:
                reply = _cli(sentinel_port, "sentinel", "get-master-addr-by-name", SERVICE)
                return reply.split() == expected

            wait_until(knows_master, 15, "sentinel")
            yield SentinelServers(master_port, sentinel_port)
        finally:
            _stop(processes)


def sync_client(url: str) -> Any:
    """A blocking client for checks from the test side: one server or a cluster."""
    if url.startswith("redis+cluster://"):
        host, _, port = url.removeprefix("redis+cluster://").split(",")[0].partition(":")
        return RedisCluster(host=host, port=int(port))
    return redis.Redis.from_url(url)
