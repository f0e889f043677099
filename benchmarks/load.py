"""Open-loop load generator: simulated visitors over real WebSockets (or HTTP beacons).

A *visitor* holds its own connection and walks through shop sessions (landing
from a traffic source, browsing categories and products, carts, purchases,
claimed identities). A scheduler issues events at the target rate across all
visitors (Poisson or fixed-interval arrivals) and hands each one to a visitor
that is not waiting for an answer; when none is free the event waits in a
backlog. Latency runs from the event's *scheduled* time to the server message
whose ``ack`` covers it, so a slow server shows up as latency instead of as a
lower offered load (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import json
import os
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlsplit

import msgpack
import orjson
from hdrh.histogram import HdrHistogram

from benchmarks import http1, wire

ROOT = Path(__file__).resolve().parent.parent
# Real user agents, vendored with the tests (tests/data/README.md names the sources).
USER_AGENTS = ROOT / "tests" / "data" / "useragents"
CATALOG = ROOT / "profiles" / "demo" / "catalog.json"

LOWEST_US, HIGHEST_US, DIGITS = 1, 60_000_000, 3
CLK_TCK = os.sysconf("SC_CLK_TCK")


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def percentiles(h: HdrHistogram, *, mean: bool = False) -> dict[str, float]:
    """Latency figures of a histogram, in milliseconds (``mean`` walks every bucket: slow)."""
    if h.get_total_count() == 0:
        return {"count": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "p99_9": 0.0, "max": 0.0}
    values = h.get_percentile_to_value_dict([50, 90, 99, 99.9, 100])
    out = {
        "count": h.get_total_count(),
        "p50": values[50] / 1000,
        "p90": values[90] / 1000,
        "p99": values[99] / 1000,
        "p99_9": values[99.9] / 1000,
        "max": values[100] / 1000,
    }
    if mean:
        out["mean"] = h.get_mean_value() / 1000
    return out


def failures_so_far(phase: Phase) -> int:
    """Error frames, close codes and lost events counted so far in a phase."""
    return (
        sum(n for k, n in phase.errors.items() if not k.startswith("_"))
        + sum(phase.close_codes.values())
        + phase.lost
    )


def progress_line(
    label: str, rate: float, elapsed: float, point: dict[str, Any], p99_ms: float, errors: int
) -> None:
    """One line a second on stderr: where the phase stands."""
    print(
        f"[{label}] {elapsed:6.1f}s "
        f"{'measure' if point['measuring'] else 'warm-up'} "
        f"target {rate:7.0f}/s achieved {point['achieved_rate']:7.0f}/s "
        f"p99 {p99_ms:8.2f} ms  errors {errors}  "
        f"conns {point['open_connections']}  backlog {point['backlog']}  "
        f"server cpu {point.get('server_cpu_pct', 0):5.0f}%  "
        f"loadgen cpu {point['loadgen_cpu_pct']:4.0f}%",
        file=sys.stderr,
        flush=True,
    )


def check_loopback(url: str) -> None:
    """Refuse any target that is not on this machine."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"refusing to load {url!r}: only loopback targets (127.0.0.1, ::1)")


def raise_nofile_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


# --------------------------------------------------------------------------- behaviour

SEARCH = [
    "https://www.google.com/search?q=",
    "https://www.google.de/search?q=",
    "https://www.bing.com/search?q=",
    "https://duckduckgo.com/?q=",
]
SOCIAL = [
    ("facebook", "https://www.facebook.com/"),
    ("instagram", "https://l.instagram.com/"),
    ("pinterest", "https://www.pinterest.com/"),
    ("tiktok", "https://www.tiktok.com/"),
]
SOURCES = [("search", 0.35), ("direct", 0.25), ("social", 0.15), ("paid", 0.15), ("email", 0.10)]
SCREENS = [[1920, 1080], [1440, 900], [1366, 768], [390, 844], [412, 915], [1536, 864]]
LANGS = ["en-GB", "en-US", "de-DE", "pl-PL", "fr-FR", "nl-NL"]
FIRST_NAMES = ["anna", "ben", "chloe", "dawid", "emma", "felix", "greta", "hugo", "ines", "jan"]


def _load_agents(name: str) -> list[str]:
    with (USER_AGENTS / name).open(encoding="utf-8") as f:
        agents: list[str] = json.load(f)["user_agents"]
    # a few entries are not valid HTTP header values (control or non-ASCII characters):
    # a browser could not send them either
    return [a for a in agents if a.isascii() and a.isprintable() and a.strip() == a and a]


@dataclass
class Visit:
    """One session of one visitor: the hello and the events to come."""

    visitor: str
    session: str
    user_agent: str
    hello: dict[str, Any]
    events: Iterator[dict[str, Any]]
    email: str | None


class World:
    """The shop and its audience: catalog, user agents, traffic sources, returning visitors."""

    def __init__(
        self,
        origin: str,
        *,
        seed: int | None = None,
        bot_share: float = 0.02,
        returning_share: float = 0.3,
    ) -> None:
        self.origin = origin.rstrip("/")
        self.rng = random.Random(seed)
        catalog = json.loads(CATALOG.read_text(encoding="utf-8"))
        self.products: list[dict[str, Any]] = catalog["products"]
        self.currency: str = catalog.get("currency", "EUR")
        self.categories = sorted({p["category"] for p in self.products})
        self.browsers = _load_agents("browsers.json")
        self.bots = _load_agents("bots.json")
        self.bot_share = bot_share
        self.returning_share = returning_share
        self.returning: deque[tuple[str, str | None]] = deque(maxlen=20_000)
        self.stats: Counter[str] = Counter()

    def new_id(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"

    def phrase(self, product: dict[str, Any]) -> str:
        words = [
            w
            for w in product["name"].lower().replace("(", "").replace(")", "").split()
            if w.isalpha()
        ]
        self.rng.shuffle(words)
        return " ".join(words[: self.rng.randint(1, 2)] or [product["category"]])

    def landing(self, source: str) -> tuple[str, str | None]:
        """The landing page (with its tags) and the referrer of a new session."""
        rng = self.rng
        product = rng.choice(self.products)
        pages = [f"/demo/p/{product['id']}", f"/demo/c/{product['category']}", "/demo"]
        path = rng.choices(pages, weights=[5, 3, 2])[0]
        if source == "search":
            return self.url(path), rng.choice(SEARCH) + quote_plus(self.phrase(product))
        if source == "social":
            name, ref = rng.choice(SOCIAL)
            campaign = rng.choice(["spring", "new-in", "reels"])
            return (
                self.url(f"{path}?utm_source={name}&utm_medium=social&utm_campaign={campaign}"),
                ref,
            )
        if source == "paid":
            gclid = f"Cj0KCQ{self.new_id()[:20]}"
            return (
                self.url(
                    f"{path}?gclid={gclid}&utm_source=google&utm_medium=cpc"
                    f"&utm_campaign={product['category']}"
                ),
                "https://www.google.com/",
            )
        if source == "email":
            return (
                self.url(f"{path}?utm_source=newsletter&utm_medium=email&utm_campaign=weekly"),
                None,
            )
        return self.url("/demo" if rng.random() < 0.7 else path), None

    def new_visit(self) -> Visit:
        rng = self.rng
        if self.returning and rng.random() < self.returning_share:
            visitor, email = rng.choice(self.returning)
            self.stats["returning_sessions"] += 1
        else:
            visitor, email = self.new_id(), None
            self.stats["new_sessions"] += 1
        bot = rng.random() < self.bot_share
        if bot:
            self.stats["bot_sessions"] += 1
        ua = rng.choice(self.bots if bot else self.browsers)
        source = rng.choices([s for s, _ in SOURCES], weights=[w for _, w in SOURCES])[0]
        self.stats[f"source_{source}"] += 1
        url, referrer = self.landing(source)
        session = self.new_id()
        hello: dict[str, Any] = {
            "type": "hello",
            "v": 1,
            "visitor": visitor,
            "session": session,
            "url": url,
            "title": "Lumen & Loom",
            "screen": rng.choice(SCREENS),
            "lang": rng.choice(LANGS),
            "consent": True,
        }
        if referrer:
            hello["referrer"] = referrer
        visit = Visit(visitor, session, ua, hello, iter(()), email)
        visit.events = self.journey(visit, url, referrer, bot)
        return visit

    def _product_page(
        self, product: dict[str, Any], url: str, ref: str | None
    ) -> Iterator[dict[str, Any]]:
        yield {
            "type": "page_view",
            "url": url,
            "title": product["name"],
            "referrer": ref,
            "page_type": "product",
        }
        yield {
            "type": "product_view",
            "url": url,
            "sku": product["id"],
            "name": product["name"],
            "category": product["category"],
            "price": product["price"],
        }

    def journey(
        self, visit: Visit, landing: str, referrer: str | None, bot: bool
    ) -> Iterator[dict[str, Any]]:
        """The events of one session, in order. About 9% of sessions put something
        in the cart and 30% of those buy (2.7% of sessions; 70% of carts are
        abandoned); 4% claim an email address."""
        rng = self.rng
        by_sku = {p["id"]: p for p in self.products}
        path = urlsplit(landing).path
        if path.startswith("/demo/p/") and path.rsplit("/", 1)[1] in by_sku:
            yield from self._product_page(by_sku[path.rsplit("/", 1)[1]], landing, referrer)
        else:
            yield {
                "type": "page_view",
                "url": landing,
                "title": "Lumen & Loom",
                "referrer": referrer,
            }
        will_cart = not bot and rng.random() < 0.09
        will_buy = will_cart and rng.random() < 0.30
        will_identify = not bot and rng.random() < 0.04
        pages = 1 + min(int(rng.expovariate(1 / 5)), 40)
        cart_at = rng.randrange(pages) if will_cart else -1
        cart: list[dict[str, Any]] = []
        previous = landing
        for i in range(pages):
            r = rng.random()
            if r < 0.25:
                category = rng.choice(self.categories)
                url = self.url(f"/demo/c/{category}")
                yield {
                    "type": "page_view",
                    "url": url,
                    "title": category.title(),
                    "referrer": previous,
                    "page_type": "category",
                }
            elif r < 0.92 or i == cart_at:
                product = rng.choice(self.products)
                url = self.url(f"/demo/p/{product['id']}")
                yield from self._product_page(product, url, previous)
                if i == cart_at or (cart and rng.random() < 0.15):
                    cart.append(
                        {
                            "sku": product["id"],
                            "qty": rng.choice([1, 1, 1, 2]),
                            "price": product["price"],
                            "name": product["name"],
                            "category": product["category"],
                        }
                    )
                    yield self._cart_event(cart, url)
            else:
                url = self.url("/demo")
                yield {
                    "type": "page_view",
                    "url": url,
                    "title": "Lumen & Loom",
                    "referrer": previous,
                }
            previous = url
        if will_identify and visit.email is None:
            visit.email = f"{rng.choice(FIRST_NAMES)}.{self.new_id()[:6]}@example.com"
            yield {"type": "identify", "url": previous, "email": visit.email}
        if cart:
            self.stats["carts"] += 1
        if will_buy and cart:
            self.stats["purchases"] += 1
            if visit.email is None:
                visit.email = f"{rng.choice(FIRST_NAMES)}.{self.new_id()[:6]}@example.com"
                yield {"type": "identify", "url": previous, "email": visit.email}
            value = round(sum(i["price"] * i["qty"] for i in cart), 2)
            yield {
                "type": "purchase",
                "url": self.url("/demo/checkout/done"),
                "order_id": f"o-{self.new_id()[:12]}",
                "items": cart,
                "value": value,
                "currency": self.currency,
            }
        elif cart:
            self.stats["abandoned_carts"] += 1
        if rng.random() < 0.5:
            self.returning.append((visit.visitor, visit.email))

    def _cart_event(self, cart: list[dict[str, Any]], url: str) -> dict[str, Any]:
        value = round(sum(i["price"] * i["qty"] for i in cart), 2)
        return {
            "type": "cart",
            "url": url,
            "items": list(cart),
            "value": value,
            "currency": self.currency,
        }


# --------------------------------------------------------------------------- transports


class Refused(Exception):
    """The server answered with a refusal that ends this exchange (code is the kind)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Busy(Refused):
    """Admission control said ``busy``: the event was not taken (no ack); the
    connection stays, and the visitor resends it after ``retry_ms``, as the
    tracker does. Counted as refused; its latency, retry wait included, goes
    to a histogram of its own."""

    def __init__(self, retry_ms: int, kind: str = "busy") -> None:
        super().__init__(kind)
        self.retry_s = retry_ms / 1000


class WsTransport:
    """One visitor's WebSocket (``benchmarks.wire``, a lean client: the
    generator must not be what the benchmark measures), speaking the edge
    protocol; also accepts a bare echo."""

    def __init__(self, base_ws: str, site: str, binary: bool) -> None:
        self.url = f"{base_ws}/ws?site={site}"
        self.binary = binary
        self.ws: wire.WireProtocol | None = None

    def send(self, message: dict[str, Any]) -> None:
        """One message: msgpack in a binary frame, or JSON (orjson: compact,
        a few µs less a message than ``json``) in a text frame."""
        assert self.ws is not None
        if self.binary:
            self.ws.send(msgpack.packb(message))
        else:
            self.ws.send_text(orjson.dumps(message))

    def decode(self, frame: str | bytes) -> dict[str, Any]:
        message: dict[str, Any] = (
            msgpack.unpackb(frame) if isinstance(frame, bytes) else orjson.loads(frame)
        )
        return message

    async def open(self, visit: Visit, timeout_s: float) -> int:
        self.ws = await wire.connect(self.url, visit.user_agent, timeout_s)
        self.send(visit.hello)
        reply = self.decode(await self.ws.recv(timeout_s))
        kind = reply.get("type")
        if kind == "hello":  # the echo server
            return 0
        if kind == "error" and reply.get("code") == "busy":  # then a close 1013
            raise Busy(int(reply.get("retry_ms") or 1000), "hello:busy")
        if kind != "welcome":
            raise Refused(f"hello:{reply.get('code', kind)}")
        return int(reply.get("ack", 0))

    async def exchange(
        self, message: dict[str, Any], errors: Counter[str], timeout_s: float
    ) -> int:
        """Send one events message; return the acknowledged sequence number."""
        assert self.ws is not None
        self.send(message)
        while True:
            reply = self.decode(await self.ws.recv(timeout_s))
            if "ack" in reply:
                if reply.get("type") == "decisions":
                    errors["_decisions"] += 1
                return int(reply["ack"])
            kind = reply.get("type")
            if kind == "events":  # the echo server sends our message back
                return max(int(e["seq"]) for e in reply["events"])
            if kind == "error":
                errors[str(reply.get("code"))] += 1
                if reply.get("code") == "busy":
                    raise Busy(int(reply.get("retry_ms") or 1000))
                if reply.get("seq") is None:  # no ack follows (e.g. store_unavailable)
                    raise Refused(str(reply.get("code")))

    async def close(self) -> None:
        if self.ws is not None:
            ws, self.ws = self.ws, None
            ws.close()


class BeaconTransport:
    """The same events as ``POST /collect`` (what most trackers do), with
    HTTP keep-alive (``benchmarks.http1``, a lean client, for the reason
    ``benchmarks.wire`` is one)."""

    def __init__(self, pool: http1.Pool, site: str, binary: bool) -> None:
        self.pool = pool
        self.target = f"/collect?site={site}"
        self.binary = binary
        self.visit: Visit | None = None

    async def open(self, visit: Visit, timeout_s: float) -> int:
        self.visit = visit
        return 0

    async def exchange(
        self, message: dict[str, Any], errors: Counter[str], timeout_s: float
    ) -> int:
        assert self.visit is not None
        body = {
            **message,
            "visitor": self.visit.visitor,
            "session": self.visit.session,
            "consent": True,
        }
        headers = {"User-Agent": self.visit.user_agent}
        if self.binary:
            headers["Content-Type"] = "application/msgpack"
            content: bytes = msgpack.packb(body)
        else:
            headers["Content-Type"] = "text/plain;charset=UTF-8"
            content = orjson.dumps(body)
        answer = await self.pool.post(self.target, content, headers, timeout_s)
        if answer.status != 200:
            raise Refused(f"http_{answer.status}")
        reply = orjson.loads(answer.body)
        for error in reply.get("errors") or []:
            errors[str(error.get("code"))] += 1
        return int(reply["ack"])

    async def close(self) -> None:
        self.visit = None


# --------------------------------------------------------------------------- measurement


def _proc_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _proc_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (the uvicorn parent and its workers), read from
    ``/proc/<pid>/task/<tid>/children`` (cheap: no scan of ``/proc``)."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{p}/task"):
                with (
                    contextlib.suppress(OSError),
                    open(f"/proc/{p}/task/{tid}/children", encoding="ascii") as f,
                ):
                    todo.extend(int(c) for c in f.read().split())
    return tree


class CpuMeter:
    """CPU% (100 = one core) and RSS of a set of processes, between samples."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids
        self.last: dict[int, int] = {}
        self.last_t = time.perf_counter()
        self.sample()

    def sample(self) -> tuple[float, float, int]:
        """(cpu %, rss MiB, process count) since the previous sample."""
        now = time.perf_counter()
        ticks: dict[int, int] = {}
        rss = 0
        for pid in self.pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ticks[pid] = _proc_ticks(pid)
                rss += _proc_rss_kb(pid)
        used = sum(t - self.last.get(pid, t) for pid, t in ticks.items())
        dt = max(now - self.last_t, 1e-6)
        self.last, self.last_t = ticks, now
        return used / CLK_TCK / dt * 100, rss / 1024, len(ticks)


class MachineMeter:
    """The whole machine's CPU between samples, from ``/proc/stat``: busy %
    (100 = one core, all processes: the server's, the generator's and any
    other's) and steal % (time the hypervisor gave this VM's CPUs to others)."""

    def __init__(self) -> None:
        self.last = self._read()

    @staticmethod
    def _read() -> tuple[int, int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        steal = values[7] if len(values) > 7 else 0
        total = sum(values[:8])
        return total, idle, steal

    def sample(self) -> tuple[float, float]:
        """(busy %, steal %) since the previous sample; 100 = one core."""
        total, idle, steal = self._read()
        t0, i0, s0 = self.last
        self.last = (total, idle, steal)
        spent = max(total - t0, 1)
        cores = os.cpu_count() or 1
        busy = (spent - (idle - i0) - (steal - s0)) / spent * 100 * cores
        return busy, (steal - s0) / spent * 100 * cores


async def sample_processes(
    point: dict[str, Any],
    own_cpu: CpuMeter,
    machine: MachineMeter,
    server_cpu: CpuMeter | None,
    redis: RedisMeter | None,
) -> None:
    """Add the CPU of the generator, the machine and the server (with its
    RSS) and Redis's figures to a per-second ``point``."""
    point["loadgen_cpu_pct"] = own_cpu.sample()[0]
    point["machine_cpu_pct"], point["machine_steal_pct"] = machine.sample()
    if server_cpu is not None:
        cpu, rss, nproc = server_cpu.sample()
        point.update(server_cpu_pct=cpu, server_rss_mb=rss, server_processes=nproc)
    if redis is not None:
        with contextlib.suppress(Exception):
            for k, v in (await redis.sample()).items():
                point[f"redis_{k}"] = v


class RedisMeter:
    """Redis ops/s, used memory and CPU from ``INFO``."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(url)
        self.last: tuple[float, int, float] | None = None

    async def sample(self) -> dict[str, float]:
        info = await self.client.info()
        now = time.perf_counter()
        ops = int(info["total_commands_processed"])
        cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        out = {"used_memory_mb": int(info["used_memory"]) / 2**20, "ops_per_s": 0.0, "cpu_pct": 0.0}
        if self.last is not None:
            t0, ops0, cpu0 = self.last
            dt = max(now - t0, 1e-6)
            out["ops_per_s"] = (ops - ops0) / dt
            out["cpu_pct"] = (cpu - cpu0) / dt * 100
        self.last = (now, ops, cpu)
        return out

    async def close(self) -> None:
        await self.client.aclose()


# --------------------------------------------------------------------------- the generator


@dataclass
class Config:
    base_ws: str  # ws://127.0.0.1:PORT
    visitors: int = 1000
    site: str = "demo"
    binary: bool = False
    transport: str = "ws"  # ws | beacon
    arrivals: str = "poisson"  # poisson | fixed
    ack_timeout_s: float = 30.0
    connect_concurrency: int = 100
    seed: int | None = None
    server_pid: int | None = None
    redis_url: str | None = None
    progress: bool = True
    label: str = ""
    # Generator processes the visitors and the rate are split across
    # (benchmarks.multi); 1 is this process alone.
    generators: int = 1
    # Visitors added when an event finds every visitor busy, up to this many
    # (split across the generator processes too): a new shopper arrives
    # whatever the others are waiting for (an open system, as a shop's
    # audience is). Beyond them, or with 0, the event waits in the backlog.
    spare_visitors: int = 0


HEAD_S = 5.0  # a phase's first seconds, measured apart too (``Phase.head_hist``)


@dataclass
class Phase:
    """What the generator counts during one phase (a run or a capacity step)."""

    start: float
    measure_from: float
    end: float
    hist: HdrHistogram = field(default_factory=new_histogram)
    retried_hist: HdrHistogram = field(default_factory=new_histogram)
    # Events whose delivery opened a new session first (connect, upgrade,
    # hello, then the event): apart, so ``hist`` is the latency of an event
    # on an open connection, the figure a persistent-connection client reports.
    opening_hist: HdrHistogram = field(default_factory=new_histogram)
    interval: HdrHistogram = field(default_factory=new_histogram)
    # The same events as ``hist``, those scheduled in the first ``HEAD_S`` of
    # the measurement only: how a phase starts (the overload's recovery: is
    # the p99 back to normal within 5 s?), as one p99 over a few hundred
    # events rather than per second (at 250 events/s a second's p99 is its
    # third slowest event).
    head_hist: HdrHistogram = field(default_factory=new_histogram)
    # Every acknowledged event (first try, resent or opening alike), from the
    # send of the message the server admitted to its ack: what the server
    # (and the loopback) took for what it admitted, on this clock, without
    # the generator's own queue, the connect and hello, or the retry waits.
    # Under overload ``hist`` holds the generator's backlog of visitors;
    # this does not.
    sent_hist: HdrHistogram = field(default_factory=new_histogram)
    scheduled: int = 0
    scheduled_measured: int = 0
    sent: int = 0
    acked: int = 0
    acked_interval: int = 0
    lost: int = 0
    refused: int = 0  # answered "busy" by admission control
    refused_mark: int = 0  # refused at the last per-second sample
    visitors_added: int = 0  # spare visitors opened for events that found none idle
    errors: Counter[str] = field(default_factory=Counter)
    close_codes: Counter[str] = field(default_factory=Counter)
    timeline: list[dict[str, Any]] = field(default_factory=list)


def _us(seconds: float) -> int:
    """A latency as the histograms take it: whole microseconds within their range."""
    return min(max(1, int(seconds * 1e6)), HIGHEST_US)


def _record(
    phase: Phase, scheduled: float, sent: float, now: float, *, retried: bool, opened: bool
) -> None:
    """An acknowledged event's latency, in the histogram of its kind, and
    from its admitted send (``sent``) in ``sent_hist``."""
    phase.sent_hist.record_value(_us(now - sent))
    us = _us(now - scheduled)
    if retried:  # refused first: its latency includes the retry wait
        phase.retried_hist.record_value(us)
    elif opened:  # includes connecting and the hello
        phase.opening_hist.record_value(us)
    else:
        phase.hist.record_value(us)
        phase.interval.record_value(us)
        if scheduled < phase.measure_from + HEAD_S:
            phase.head_hist.record_value(us)


class Visitor:
    def __init__(self, gen: LoadGenerator) -> None:
        self.gen = gen
        self.transport: WsTransport | BeaconTransport | None = None
        self.visit: Visit | None = None
        self.seq = 0
        self.waiter: asyncio.Future[float | None] | None = None
        self.busy_s: float | None = None  # the retry hint of a hello refused busy

    @property
    def is_open(self) -> bool:
        """A connection is held and the server has not closed it."""
        t = self.transport
        if isinstance(t, WsTransport):
            return t.ws is not None and t.ws.close_code is None
        return t is not None

    async def start_session(self) -> bool:
        """Open a new session; False when it failed (counted by kind), with
        ``busy_s`` the server's retry hint when it refused the hello busy."""
        gen = self.gen
        self.busy_s = None
        if self.transport is not None:
            await self.transport.close()
            gen.sessions_closed += 1
        self.visit = gen.world.new_visit()
        self.transport = gen.make_transport()
        t0 = time.perf_counter()
        try:
            self.seq = await self.transport.open(self.visit, gen.cfg.ack_timeout_s)
        except Exception as exc:  # counted by kind; the visitor tries again on its next event
            gen.count_failure("connect", exc)
            await self.transport.close()
            self.transport = None
            if isinstance(exc, Busy):
                self.busy_s = exc.retry_s
            return False
        gen.hello_hist.record_value(_us(time.perf_counter() - t0))
        gen.sessions_opened += 1
        return True

    async def deliver(self, scheduled: float) -> None:
        gen = self.gen
        event = None
        opened = False
        retried = False
        if self.visit is not None and self.transport is not None:
            event = next(self.visit.events, None)
        if event is None:
            opened = True
            tries = 0
            while not await self.start_session():
                if self.busy_s is None:  # no hint to wait for: this event is lost
                    gen.phase.lost += 1
                    await asyncio.sleep(0.2)
                    return
                # Refused at its hello (busy, then close 1013): as the tracker
                # does, open again after the server's retry and a random
                # backoff, the event kept (counted refused, its latency apart).
                gen.phase.refused += 0 if retried else 1
                retried = True
                backoff_s = min(30.0, 0.5 * 2**tries)
                tries += 1
                await asyncio.sleep(self.busy_s + gen.rng.uniform(0.0, backoff_s))
            assert self.visit is not None
            event = next(self.visit.events)
        assert self.transport is not None and self.visit is not None
        self.seq += 1
        seq = self.seq
        event["seq"] = seq
        event["id"] = f"{self.visit.session[:8]}{seq:08d}"
        event["at"] = int(time.time() * 1000)
        if event.get("referrer") is None:
            event.pop("referrer", None)
        phase = gen.phase
        phase.sent += 1
        message = {"type": "events", "events": [event]}
        while True:
            sent = time.perf_counter()
            try:
                acked = await self.transport.exchange(message, phase.errors, gen.cfg.ack_timeout_s)
                break
            except Busy as busy:  # as the tracker does: resend it after retry_ms
                phase.refused += 0 if retried else 1
                retried = True
                await asyncio.sleep(busy.retry_s)
            except Exception as exc:
                gen.count_failure("exchange", exc)
                phase.lost += 1
                await self.transport.close()
                self.transport = None
                return
        now = time.perf_counter()
        if acked < seq:
            phase.errors["ack_below_seq"] += 1
            phase.lost += 1
            return
        if scheduled >= phase.measure_from and now <= phase.end + gen.drain_s:
            _record(phase, scheduled, sent, now, retried=retried, opened=opened)
            phase.acked += 1
        phase.acked_interval += 1

    async def run(self, first: float | None = None) -> None:
        """Deliver ``first`` (a spare visitor's), then event after event."""
        gen = self.gen
        loop = asyncio.get_running_loop()
        scheduled = first
        while True:
            if scheduled is None and gen.backlog:
                scheduled = gen.backlog.popleft()
            if scheduled is None:
                self.waiter = loop.create_future()
                gen.idle.append(self)
                scheduled = await self.waiter
                self.waiter = None
                if scheduled is None:
                    break
            gen.busy += 1
            try:
                await self.deliver(scheduled)
            finally:
                gen.busy -= 1
            scheduled = None
        if self.transport is not None:
            await self.transport.close()


class LoadGenerator:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        base = cfg.base_ws
        check_loopback(base)
        self.base_http = "http" + base[2:] if base.startswith("ws") else base
        self.world = World(self.base_http, seed=cfg.seed)
        self.rng = random.Random(None if cfg.seed is None else cfg.seed + 1)
        self.visitors: list[Visitor] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.idle: list[Visitor] = []
        self.backlog: deque[float] = deque()
        self.spare = cfg.spare_visitors  # still to add (``Config.spare_visitors``)
        self.busy = 0
        self.drain_s = 10.0
        self.phase = Phase(0, 0, 0)
        self.hello_hist = new_histogram()
        self.connect_failures: Counter[str] = Counter()
        self.sessions_opened = 0
        self.sessions_closed = 0
        self.http_pool: http1.Pool | None = None
        self.server_cpu = CpuMeter(self._server_pids) if cfg.server_pid else None
        self.own_cpu = CpuMeter(lambda: [os.getpid()])
        self.machine = MachineMeter()
        self.redis = RedisMeter(cfg.redis_url) if cfg.redis_url else None

    def _server_pids(self) -> list[int]:
        assert self.cfg.server_pid is not None
        return process_tree(self.cfg.server_pid)

    def make_transport(self) -> WsTransport | BeaconTransport:
        if self.cfg.transport == "beacon":
            assert self.http_pool is not None
            return BeaconTransport(self.http_pool, self.cfg.site, self.cfg.binary)
        return WsTransport(self.cfg.base_ws, self.cfg.site, self.cfg.binary)

    def count_failure(self, where: str, exc: BaseException) -> None:
        phase = self.phase
        if isinstance(exc, wire.Closed):
            phase.close_codes[str(exc.code) if exc.code != 1006 else "no_close_frame"] += 1
        elif isinstance(exc, wire.HandshakeFailed):
            phase.errors[f"{where}:http_{exc.status}"] += 1
        elif isinstance(exc, Refused):
            phase.errors[f"{where}:{exc.kind}"] += 1
        elif isinstance(exc, TimeoutError):
            phase.errors[f"{where}:timeout"] += 1
        else:
            phase.errors[f"{where}:{type(exc).__name__}"] += 1

    @property
    def open_connections(self) -> int:
        return sum(1 for v in self.visitors if v.is_open)

    async def start(self) -> None:
        """Connect every visitor (its first session's hello), a bounded number at a time."""
        if self.cfg.transport == "beacon":
            self.http_pool = http1.Pool(self.base_http, min(self.cfg.visitors, 500))
        gate = asyncio.Semaphore(self.cfg.connect_concurrency)
        self.phase = Phase(time.perf_counter(), time.perf_counter(), time.perf_counter())

        async def one() -> Visitor:
            v = Visitor(self)
            async with gate:
                await v.start_session()
            return v

        t0 = time.perf_counter()
        self.visitors = list(await asyncio.gather(*(one() for _ in range(self.cfg.visitors))))
        self.connect_s = time.perf_counter() - t0
        self.startup_errors = self._startup_errors()
        self.tasks = [asyncio.create_task(v.run()) for v in self.visitors]
        await asyncio.sleep(0)
        # What was built so far (the world, the visitors, their connections)
        # lives to the end: out of the collector's sight, so that its passes
        # during a phase do not walk it (a late generator loop inflates latency).
        gc.collect()
        gc.freeze()

    def _startup_errors(self) -> dict[str, int]:
        return dict(self.phase.errors) | {
            f"close_{k}": n for k, n in self.phase.close_codes.items()
        }

    async def connect_missing(self, timeout_s: float) -> None:
        """Before any phase: open again, round after round, the connection of
        every visitor whose first one failed, until all are open or
        ``timeout_s`` has passed; the failures stay counted by kind in
        ``startup_errors``."""
        gate = asyncio.Semaphore(self.cfg.connect_concurrency)
        deadline = time.perf_counter() + timeout_s

        async def one(v: Visitor) -> None:
            async with gate:
                if time.perf_counter() < deadline and v.transport is None:
                    await v.start_session()

        while time.perf_counter() < deadline:
            missing = [v for v in self.visitors if v.transport is None]
            if not missing:
                break
            await asyncio.gather(*(one(v) for v in missing))
            await asyncio.sleep(min(0.5, max(0.0, deadline - time.perf_counter())))
        self.connect_s += timeout_s - max(0.0, deadline - time.perf_counter())
        self.startup_errors = self._startup_errors()

    async def stop(self) -> None:
        while self.idle:
            v = self.idle.pop()
            if v.waiter is not None and not v.waiter.done():
                v.waiter.set_result(None)
        for task in self.tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for v in self.visitors:
            if v.transport is not None:
                await v.transport.close()
        if self.http_pool is not None:
            await self.http_pool.close()
        if self.redis is not None:
            await self.redis.close()

    def assign(self, scheduled: float) -> None:
        idle = self.idle
        while idle:
            i = self.rng.randrange(len(idle))
            idle[i], idle[-1] = idle[-1], idle[i]
            v = idle.pop()
            if v.waiter is not None and not v.waiter.done():
                v.waiter.set_result(scheduled)
                return
        if self.spare > 0:  # a new shopper, who opens a session for it
            self.spare -= 1
            self.phase.visitors_added += 1
            v = Visitor(self)
            self.visitors.append(v)
            self.tasks.append(asyncio.create_task(v.run(first=scheduled)))
            return
        self.backlog.append(scheduled)

    async def _schedule(self, rate: float, phase: Phase, offset_s: float = 0.0) -> None:
        t = phase.start + offset_s
        exp = self.rng.expovariate
        poisson = self.cfg.arrivals == "poisson"
        while True:
            now = time.perf_counter()
            while t <= now:
                if t >= phase.end:
                    return
                self.assign(t)
                phase.scheduled += 1
                if t >= phase.measure_from:
                    phase.scheduled_measured += 1
                t += exp(rate) if poisson else 1.0 / rate
            await asyncio.sleep(min(t - now, 0.005))

    async def _sample(self, phase: Phase, rate: float, elapsed: float, dt: float) -> dict[str, Any]:
        interval = percentiles(phase.interval)
        phase.interval = new_histogram()
        point: dict[str, Any] = {
            "t": round(elapsed, 3),
            "target_rate": rate,
            "achieved_rate": phase.acked_interval / dt,
            "p50_ms": interval["p50"],
            "p90_ms": interval["p90"],
            "p99_ms": interval["p99"],
            "max_ms": interval["max"],
            "backlog": len(self.backlog),
            "refused_busy": phase.refused - phase.refused_mark,
            "open_connections": self.open_connections,
            "measuring": time.perf_counter() >= phase.measure_from,
        }
        phase.acked_interval = 0
        phase.refused_mark = phase.refused
        await sample_processes(point, self.own_cpu, self.machine, self.server_cpu, self.redis)
        return point

    async def phase_run(self, rate: float, duration_s: float, warmup_s: float) -> dict[str, Any]:
        """Offer ``rate`` events/s for warm-up + duration; measure the last ``duration_s``."""
        start = time.perf_counter() + 0.05
        self.own_cpu.sample()
        self.machine.sample()
        if self.server_cpu is not None:
            self.server_cpu.sample()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.sample()

        async def second(phase: Phase, now: float, dt: float, lag_s: float) -> None:
            point = await self._sample(phase, rate, now - phase.start, dt)
            point["loadgen_loop_lag_ms"] = lag_s * 1000
            phase.timeline.append(point)
            if self.cfg.progress:
                so_far = phase.hist.get_value_at_percentile(99) / 1000
                progress_line(
                    self.cfg.label, rate, now - phase.start, point, so_far, failures_so_far(phase)
                )

        phase, undelivered = await self.drive(rate, duration_s, warmup_s, start, 0.0, second)
        return self._summary(phase, rate, duration_s, warmup_s, undelivered)

    async def drive(
        self,
        rate: float,
        duration_s: float,
        warmup_s: float,
        start: float,
        offset_s: float,
        second: Callable[[Phase, float, float, float], Awaitable[None]],
    ) -> tuple[Phase, int]:
        """Offer ``rate`` from ``start`` (a ``perf_counter`` time: the same
        clock in every process) for warm-up + duration, calling ``second``
        about once a second with (phase, now, seconds since the last call, the
        loop's worst lateness since then); wait for the answers (at most
        ``drain_s`` past the end). Return the phase and the events never sent."""
        phase = Phase(start, start + warmup_s, start + warmup_s + duration_s)
        self.phase = phase
        scheduler = asyncio.create_task(self._schedule(rate, phase, offset_s))
        lag = [0.0]

        async def lag_probe() -> None:  # how late the generator's own event loop runs
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                lag[0] = max(lag[0], time.perf_counter() - t - 0.01)

        prober = asyncio.create_task(lag_probe())
        last = time.perf_counter()
        while True:
            await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - last)))
            now = time.perf_counter()
            worst, lag[0] = lag[0], 0.0
            await second(phase, now, now - last, worst)
            last = now
            if scheduler.done() and (
                (self.busy == 0 and not self.backlog) or now > phase.end + self.drain_s
            ):
                break
        prober.cancel()
        undelivered = len(self.backlog)
        self.backlog.clear()
        return phase, undelivered

    def _summary(
        self, phase: Phase, rate: float, duration_s: float, warmup_s: float, undelivered: int
    ) -> dict[str, Any]:
        result = summarize(
            phase,
            self.cfg,
            rate=rate,
            duration_s=duration_s,
            warmup_s=warmup_s,
            undelivered=undelivered,
            open_connections=self.open_connections,
            sessions_opened=self.sessions_opened,
            hello_hist=self.hello_hist,
        )
        self.hello_hist = new_histogram()
        return result


def summarize(
    phase: Phase,
    cfg: Config,
    *,
    rate: float,
    duration_s: float,
    warmup_s: float,
    undelivered: int,
    open_connections: int,
    sessions_opened: int,
    hello_hist: HdrHistogram,
) -> dict[str, Any]:
    """The figures of one phase (a run or a ladder step) from its counts and timeline."""
    measured = [
        p for p in phase.timeline if p["measuring"] and p["t"] <= warmup_s + duration_s + 0.5
    ]

    def mean(key: str) -> float | None:
        values = [p[key] for p in measured if key in p]
        return sum(values) / len(values) if values else None

    def peak(key: str) -> float | None:
        values = [p[key] for p in measured if key in p]
        return max(values) if values else None

    decisions = phase.errors.pop("_decisions", 0)
    errors = dict(phase.errors)
    result: dict[str, Any] = {
        "target_rate": rate,
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "visitors": cfg.visitors,
        "generators": cfg.generators,
        "transport": cfg.transport,
        "encoding": "msgpack" if cfg.binary else "json",
        "arrivals": cfg.arrivals,
        "events_scheduled": phase.scheduled,
        "events_sent": phase.sent,
        "events_acked_measured": phase.acked,
        "events_scheduled_measured": phase.scheduled_measured,
        "acked_share": phase.acked / phase.scheduled_measured if phase.scheduled_measured else 0.0,
        "achieved_rate": phase.acked / duration_s,
        "latency_ms": percentiles(phase.hist, mean=True),
        "head_latency_ms": percentiles(phase.head_hist),
        "retried_latency_ms": percentiles(phase.retried_hist),
        "session_opening_latency_ms": percentiles(phase.opening_hist),
        "admitted_from_send_ms": percentiles(phase.sent_hist),
        "decisions_replies": decisions,
        "errors": errors,
        "close_codes": dict(phase.close_codes),
        "lost_events": phase.lost,
        "refused_busy": phase.refused,
        "visitors_added": phase.visitors_added,
        "undelivered_at_end": undelivered,
        "open_connections": open_connections,
        "sessions_opened": sessions_opened,
        "hello_latency_ms": percentiles(hello_hist),
        "server_cpu_pct": mean("server_cpu_pct"),
        "server_cpu_pct_peak": peak("server_cpu_pct"),
        "server_rss_mb": peak("server_rss_mb"),
        "server_processes": peak("server_processes"),
        "loadgen_cpu_pct": mean("loadgen_cpu_pct"),
        "loadgen_cpu_pct_peak": peak("loadgen_cpu_pct"),
        "loadgen_loop_lag_ms_max": peak("loadgen_loop_lag_ms"),
        "machine_cpu_pct": mean("machine_cpu_pct"),
        "machine_cpu_pct_peak": peak("machine_cpu_pct"),
        "machine_steal_pct": mean("machine_steal_pct"),
        "redis_ops_per_s": mean("redis_ops_per_s"),
        "redis_used_memory_mb": peak("redis_used_memory_mb"),
        "redis_cpu_pct": mean("redis_cpu_pct"),
        "timeline": phase.timeline,
    }
    result["failures"] = (
        sum(errors.values()) + sum(phase.close_codes.values()) + phase.lost + undelivered
    )
    return result
