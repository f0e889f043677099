from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster import RedisClusterServers, SentinelServers, redis_cluster, redis_sentinel
from tests.helpers import EdgeServer, RedisServer, edge_server, redis_server


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """One real redis-server for the session, on a free port."""
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def cluster() -> Iterator[RedisClusterServers]:
    """A real 3-master Redis Cluster for the session (tests/cluster.py)."""
    with redis_cluster() as servers:
        yield servers


@pytest.fixture(scope="session")
def sentinel() -> Iterator[SentinelServers]:
    """A real master and a Sentinel watching it, for the session."""
    with redis_sentinel() as servers:
        yield servers


@pytest.fixture(scope="session", params=["embedded", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[EdgeServer]:
    """A real edge server process on each store."""
    redis_url = None
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis").url.replace("/0", "/1")
    with edge_server(redis_url=redis_url) as running:
        yield running
