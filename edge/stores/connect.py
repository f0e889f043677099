"""Redis clients from ``--redis`` / ``EDGE_REDIS_URL``: the one place that reads
the URL and builds the client every Redis user of edge shares.

Accepted forms (``rediss`` instead of ``redis`` for TLS):

    redis://[user:password@]host[:port][/db]                   one server
    unix://[user:password@]/path/to/redis.sock[?db=N]          one server, local socket
    redis+cluster://[user:password@]host[:port][,host[:port]...]
                                                               Redis Cluster (seed nodes)
    redis+sentinel://[user:password@]host[:port][,host[:port]...]/service[/db]
                                                               the master of ``service``,
                                                               found through Sentinel

Cluster and Sentinel URLs take these query options: ``ssl_ca_certs``,
``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` (required | optional |
none), ``ssl_check_hostname`` (TLS forms only) and ``sentinel_username``,
``sentinel_password`` (Sentinel only: the credentials in the URL are the data
nodes'). Plain ``redis://`` URLs keep every option redis-py reads from them.

Whatever the topology, a client built here keeps edge's invariants:

* every call has a deadline (``socket_timeout_s``, ``connect_timeout_s``) and
  redis-py never retries (the circuit breaker and the ledger do);
* more calls than connections wait for one (up to ``pool_timeout_s``, then a
  ``ConnectionError`` "No connection available."), never "Too many
  connections" at once. One server and Sentinel use a blocking pool. redis-py's
  cluster client has none (each node's pool raises ``MaxConnectionsError``
  when empty), so ``EdgeCluster`` puts a gate of ``max_connections`` calls in
  flight in front of it and gives each node twice that many connections: a
  call holds at most one connection per node, and the other half covers
  connections redis-py closes in the background after an error. Should even
  that run out, ``MaxConnectionsError`` is a ``ConnectionError``: the breaker
  counts it and a visitor gets the store-unavailable fallback, not an error;
* MULTI is not used on Redis Cluster (redis-py runs each queued command of a
  cluster transaction in a thread of its own): what must be atomic is one Lua
  script over keys of one hash slot (``edge.stores.keys``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from edge.errors import BadRedisUrl

Topology = Literal["single", "cluster", "sentinel"]

# What says "the server is not there" (as opposed to an error it answered
# with). On a cluster that includes CLUSTERDOWN (a node without a quorum or a
# slot's master) and the cluster client failing to learn the topology at all
# (RedisClusterException, which is not a RedisError; SlotNotCoveredError is one).
OUTAGE_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    RedisClusterException,
    OSError,
    TimeoutError,
)
# Everything a Redis call can fail with: what a Redis user turns into StoreError.
REDIS_ERRORS = (RedisError, RedisClusterException)

FORMS = (
    "redis://host:port/db, rediss://..., unix:///path.sock, "
    "redis+cluster://host:port[,host:port...], rediss+cluster://..., "
    "redis+sentinel://host:port[,host:port...]/service[/db], rediss+sentinel://..."
)
_DEFAULT_PORT = {"cluster": 6379, "sentinel": 26379}
_TLS_OPTIONS = frozenset(
    {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"}
)
_SENTINEL_OPTIONS = frozenset({"sentinel_username", "sentinel_password"})
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_BOOLEANS = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """A parsed ``--redis`` URL. ``nodes`` are the cluster's seed nodes or the
    sentinels; ``url`` is the plain URL itself (topology ``single``)."""

    topology: Topology
    url: str = field(repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    options: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def option(self, name: str) -> str | None:
        return dict(self.options).get(name)


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """The pool and the deadlines (settings ``redis_*``)."""

    max_connections: int = 32
    pool_timeout_s: float = 5.0  # waiting for a free connection
    socket_timeout_s: float | None = 1.0  # one reply; None: wait (edge events tail)
    connect_timeout_s: float = 1.0
    health_check_interval_s: int = 30


def redact(url: str) -> str:
    """``url`` without its password, for logs and messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, hosts = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hosts}"


def parse_redis_url(url: str) -> RedisUrl:
    """Check ``url`` and take it apart; ``BadRedisUrl`` names what is wrong."""
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise BadRedisUrl(f"{redact(url)!r} is not a Redis URL; use one of: {FORMS}")
    if scheme in ("redis", "rediss", "unix"):
        try:
            parse_url(url)
        except ValueError as exc:
            raise BadRedisUrl(f"bad Redis URL {redact(url)!r}: {exc}") from None
        return RedisUrl("single", url, tls=scheme == "rediss")
    base, plus, topology = scheme.partition("+")
    if not plus or base not in ("redis", "rediss") or topology not in ("cluster", "sentinel"):
        raise BadRedisUrl(f"unknown Redis URL scheme {scheme!r}; use one of: {FORMS}")
    return _parse_multi(url, topology, tls=base == "rediss")  # type: ignore[arg-type]


def _parse_multi(url: str, topology: Topology, *, tls: bool) -> RedisUrl:
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unbalanced [ipv6]
        raise BadRedisUrl(f"{redact(url)!r}: {exc}") from None
    if parts.fragment:
        raise BadRedisUrl(f"{redact(url)!r}: a Redis URL has no #fragment")
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = tuple(_node(url, item, _DEFAULT_PORT[topology]) for item in hostlist.split(","))
    service, db = _path(url, topology, parts.path)
    options = _options(url, topology, tls, parts.query)
    return RedisUrl(topology, url, nodes, service, db, tls, username, password, options)


def _node(url: str, item: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[ipv6]`` or ``[ipv6]:port``."""
    item = item.strip()
    if item.startswith("["):
        host, close, rest = item[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise BadRedisUrl(f"{redact(url)!r}: bad IPv6 address {item!r}")
        port_text = rest[1:]
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise BadRedisUrl(f"{redact(url)!r}: every node needs a host (host:port, comma-separated)")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadRedisUrl(f"{redact(url)!r}: bad port {port_text!r} for {host}")
    return host, int(port_text)


def _path(url: str, topology: Topology, path: str) -> tuple[str | None, int]:
    """(service, db): Sentinel needs ``/service[/db]``; a cluster has only db 0."""
    segments = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
    if topology == "cluster":
        if segments not in ([], ["0"]):
            raise BadRedisUrl(
                f"{redact(url)!r}: Redis Cluster has only database 0; drop the path {path!r}"
            )
        return None, 0
    if not segments or not segments[0] or len(segments) > 2:
        raise BadRedisUrl(
            f"{redact(url)!r}: a Sentinel URL names the service: "
            "redis+sentinel://host:port[,host:port...]/service[/db]"
        )
    db_text = segments[1] if len(segments) == 2 else "0"
    if not db_text.isdigit():
        raise BadRedisUrl(f"{redact(url)!r}: the database must be a number, not {db_text!r}")
    return segments[0], int(db_text)


def _options(url: str, topology: Topology, tls: bool, query: str) -> tuple[tuple[str, str], ...]:
    allowed = (_TLS_OPTIONS if tls else frozenset()) | (
        _SENTINEL_OPTIONS if topology == "sentinel" else frozenset()
    )
    pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    for name, value in pairs:
        if name not in allowed:
            accepted = ", ".join(sorted(allowed)) or "none"
            raise BadRedisUrl(
                f"{redact(url)!r}: unknown option {name!r} for {topology} "
                f"(accepted here: {accepted})"
            )
        if name == "ssl_cert_reqs" and value.lower() not in _CERT_REQS:
            raise BadRedisUrl(f"{redact(url)!r}: ssl_cert_reqs is one of {', '.join(_CERT_REQS)}")
        if name == "ssl_check_hostname" and value.lower() not in _BOOLEANS:
            raise BadRedisUrl(f"{redact(url)!r}: ssl_check_hostname is yes or no")
    return tuple(pairs)


# --- clients -------------------------------------------------------------------

_NO_RETRY = Retry(NoBackoff(), 0)
# The task holding a slot, inside a gated call: calls that call makes itself
# (redis-py re-sends a pipeline's redirected commands one by one) must not wait
# for a second slot. The task, not a flag: a task started inside the call
# inherits the context, yet is another caller.
_HOLDER: contextvars.ContextVar[asyncio.Task[Any] | None] = contextvars.ContextVar(
    "edge_redis_gate", default=None
)


class Gate:
    """At most ``size`` calls in flight; the next waits up to ``timeout_s``
    (then ``ConnectionError``, as from a blocking pool)."""

    def __init__(self, size: int, timeout_s: float) -> None:
        if size < 1:
            raise ValueError("max_connections must be at least 1")
        self.size = size
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(size)

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is not None and _HOLDER.get() is task:
            yield
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise RedisConnectionError("No connection available.") from None
        token = _HOLDER.set(task)
        try:
            yield
        finally:
            _HOLDER.reset(token)
            self._slots.release()


class EdgeCluster(RedisCluster):
    """redis-py's cluster client behind a ``Gate`` (see the module docstring)."""

    def __init__(self, *, gate: Gate, **kwargs: Any) -> None:
        super().__init__(max_connections=2 * gate.size, **kwargs)
        self.gate = gate

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.gate.hold():
            return await super().execute_command(*args, **kwargs)

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if transaction:
            raise RedisClusterException(
                "edge uses no MULTI on Redis Cluster: make it one Lua script over one slot"
            )
        if shard_hint:
            raise RedisClusterException("shard_hint is not supported on Redis Cluster")
        return _GatedPipeline(self)  # type: ignore[abstract]  # as redis-py builds its own


class _GatedPipeline(ClusterPipeline):
    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        client = self.cluster_client
        assert isinstance(client, EdgeCluster)
        async with client.gate.hold():
            return await super().execute(raise_on_error, allow_redirections)


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's pool (finds the master before each new connection) with the
    blocking pool's waiting instead of "Too many connections"."""


class SentinelMaster(aioredis.Redis):
    """The master's client; closing it also closes the connections to the sentinels."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            await self.sentinel_manager.aclose()


RedisClient: TypeAlias = aioredis.Redis | EdgeCluster


def open_client(url: str | RedisUrl, options: ClientOptions | None = None) -> RedisClient:
    """The client for ``url`` (a string is parsed first). Nothing connects yet."""
    target = parse_redis_url(url) if isinstance(url, str) else url
    opts = options or ClientOptions()
    if target.topology == "cluster":
        return _cluster(target, opts)
    if target.topology == "sentinel":
        return _sentinel(target, opts)
    pool = aioredis.BlockingConnectionPool.from_url(
        target.url,
        max_connections=opts.max_connections,
        timeout=opts.pool_timeout_s,
        socket_timeout=opts.socket_timeout_s,
        socket_connect_timeout=opts.connect_timeout_s,
        health_check_interval=opts.health_check_interval_s,
        retry=_NO_RETRY,  # the breaker and the ledger retry, not redis-py
    )
    return aioredis.Redis(connection_pool=pool)


def _tls(target: RedisUrl) -> dict[str, Any]:
    if not target.tls:
        return {}
    kwargs: dict[str, Any] = {"ssl": True}
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if (value := target.option(name)) is not None:
            kwargs[name] = value
    if (reqs := target.option("ssl_cert_reqs")) is not None:
        kwargs["ssl_cert_reqs"] = _CERT_REQS[reqs.lower()]
    if (check := target.option("ssl_check_hostname")) is not None:
        kwargs["ssl_check_hostname"] = _BOOLEANS[check.lower()]
    return kwargs


def _common(target: RedisUrl, opts: ClientOptions) -> dict[str, Any]:
    return {
        "username": target.username,
        "password": target.password,
        "socket_timeout": opts.socket_timeout_s,
        "socket_connect_timeout": opts.connect_timeout_s,
        "health_check_interval": opts.health_check_interval_s,
        **_tls(target),
    }


def _cluster(target: RedisUrl, opts: ClientOptions) -> EdgeCluster:
    return EdgeCluster(
        gate=Gate(opts.max_connections, opts.pool_timeout_s),
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        retry=_NO_RETRY,  # no cluster-level retries: a failure reaches the breaker at once
        **_common(target, opts),
    )


def _sentinel(target: RedisUrl, opts: ClientOptions) -> SentinelMaster:
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": opts.socket_timeout_s,
        "socket_connect_timeout": opts.connect_timeout_s,
        "retry": _NO_RETRY,
        "username": target.option("sentinel_username"),
        "password": target.option("sentinel_password"),
        **_tls(target),
    }
    manager = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_kwargs)
    assert target.service is not None  # parse_redis_url
    master = manager.master_for(
        target.service,
        redis_class=SentinelMaster,
        connection_pool_class=_BlockingSentinelPool,
        db=target.db,
        max_connections=opts.max_connections,
        timeout=opts.pool_timeout_s,
        retry=_NO_RETRY,
        **_common(target, opts),
    )
    assert isinstance(master, SentinelMaster)
    master.sentinel_manager = manager
    return master


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


async def ping(client: RedisClient) -> None:
    """One server answers; on a cluster, every master."""
    if isinstance(client, RedisCluster):
        await client.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.ping()


async def start_afresh(client: RedisClient) -> None:
    """After an outage: drop idle connections (they are dead) and, on a
    cluster, learn the topology again (a replica may have taken over a slot;
    redis-py re-learns it by itself after a single command fails, not after a
    pipeline does)."""
    if isinstance(client, RedisCluster):
        for node in client.get_nodes():
            await node.disconnect_free_connections()
        await client.nodes_manager.initialize()
    else:
        await client.connection_pool.disconnect(inuse_connections=False)


async def close_client(client: RedisClient) -> None:
    await client.aclose()
    if not isinstance(client, RedisCluster):
        # A pool handed to the client is not the client's to close.
        await client.connection_pool.disconnect()
