"""Server settings: one typed object, from defaults, environment and CLI.

Every field can be set by an environment variable ``EDGE_<NAME>`` (upper
case), and the CLI flags of ``edge serve`` override those. Units are in the
names (``_s`` seconds, ``_bytes``, ``_per_s``).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    profiles: Path = Path("profiles")
    redis_url: str | None = None  # None: the embedded in-process store
    workers: int = 1
    log_level: str = "info"
    demo: bool = True  # serve the demo shop pages under /demo
    # WebSocket limits
    max_frame_bytes: int = 64 * 1024
    max_messages_per_s: float = 20.0  # sustained; bursts of twice that pass
    hello_timeout_s: float = 10.0
    idle_timeout_s: float = 1800.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    ws_deflate: bool = False
    require_origin: bool = False
    # Per client address (docs/protocol.md, "Limits"; 0 turns a limit off), in
    # each worker process: open WebSocket connections, and one token bucket
    # (bursts of twice the rate) shared by its handshakes, messages and beacons.
    max_connections_per_address: int = 100
    max_messages_per_s_per_address: float = 100.0
    max_tracked_addresses: int = 100_000  # bounds the table's memory (~200 bytes each)
    # Peers whose X-Forwarded-For is believed (comma-separated addresses or
    # CIDR networks; "" trusts none). The only source of truth: edge serve
    # turns uvicorn's own proxy header handling off.
    trusted_proxies: str | None = "127.0.0.1,::1"
    # Country and region of a visit (edge.tracker.geo; the geo.* attributes):
    # a MaxMind .mmdb file the operator provides, and/or the country header a
    # trusted proxy sets (e.g. CF-IPCountry). Neither: geo.country is null.
    geoip_db: str | None = None
    country_header: str | None = None
    # Before the handshake (docs/protocol.md, "Limits"; edge.tracker.transport):
    # a request (line, headers and body) must have arrived within
    # request_timeout_s of the connection opening or of the previous response
    # on that connection (else 408 and close), and its line and headers must
    # fit in max_header_bytes (else 431 and close).
    request_timeout_s: float = 10.0
    max_header_bytes: int = 16 * 1024
    # Open files, per worker process (edge.tracker.openfiles): the soft limit
    # (RLIMIT_NOFILE) is raised to the hard one at start, or set to
    # max_open_files when that is above 0. Client connections may hold all of
    # it but open_files_reserve (and redis_max_connections with --redis):
    # past that, a new connection gets HTTP 503 unless it asks for /healthz,
    # /readyz or /metrics.
    max_open_files: int = 0
    open_files_reserve: int = 128
    # Admission control (edge.tracker.admission): a message that waited longer
    # than this to be handled, or arrives while the event loop runs this late,
    # is refused at once with "busy" (no ack; the tracker resends after
    # retry_ms, about busy_retry_s); 0 turns it off.
    admission_wait_s: float = 0.05
    busy_retry_s: float = 1.0
    # Messages (and beacons) one worker handles at once, at most: one more is
    # refused "busy" too. Each one admitted is work in every turn of the event
    # loop until it is answered, so this bounds how long an admitted message
    # waits (about max_in_flight x the CPU of one). 0: no bound.
    max_in_flight: int = 128
    # While the event loop runs late (this process is busy), the bound above
    # is tightened to what fits this much time at the CPU one answered
    # message costs here, measured (edge.tracker.admission). 0: the bound
    # above alone.
    in_flight_budget_s: float = 0.05
    # Resends of refused messages taken at once ahead of their share (one for
    # every two fresh messages admitted; beyond it, a resend waits for the
    # process to have nothing in flight): edge.tracker.admission.
    resend_burst: int = 32
    # store
    ack_timeout_s: float = 10.0
    # How long a WebSocket message waits for a store that answers nothing (a
    # hung Redis) before it gets the fallback answer (no ack, events kept
    # pending): a write out this long with no other call answered, or a load,
    # coupon claim or signal read not done this long after the message came
    # (docs/operations.md, "Store outages"). Well above a healthy store's
    # answer, well below a hung one's socket deadline (redis_socket_timeout_s).
    answer_deadline_s: float = 0.1
    redis_max_connections: int = 32
    redis_timeout_s: float = 5.0  # waiting for a free pooled connection
    # Store outages (docs/operations.md): each Redis call's deadline, and the
    # circuit breaker that fails calls at once after consecutive failures.
    redis_socket_timeout_s: float = 0.25
    redis_connect_timeout_s: float = 0.25
    redis_breaker_failures: int = 3
    redis_breaker_cooldown_s: float = 0.5
    reload_interval_s: float = 2.0  # how often profiles/ is checked for changes; 0: never
    # How long the running server waits for a reload (run off the event loop)
    # before it reports it as overdue in /healthz; it is left to finish, and no
    # other reload starts meanwhile (edge.config.registry, docs/configuration.md "Limits").
    reload_timeout_s: float = 10.0
    # operations (docs/operations.md)
    log_json: bool = False  # one JSON object per log line
    # Bearer token of the admin API under /admin/; None: the admin API is off (404).
    admin_token: str | None = field(default=None, repr=False)
    # How long an erased visitor id stays refused: events still queued in a
    # browser cannot recreate the profile during this time.
    erasure_tombstone_days: int = 30
    # automation events out (docs/operations.md, "Automation events")
    automation_stream_maxlen: int = 100_000  # per site, approximate (XADD MAXLEN ~)
    automation_claim_interval_s: float = 5.0  # how often due abandoned carts are claimed
    webhook_timeout_s: float = 5.0
    webhook_attempts: int = 5  # then the delivery goes to the dead-letter list
    webhook_backoff_s: float = 1.0  # doubled after each failed try

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"EDGE_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _convert(f.name, raw, cls.__dataclass_fields__[f.name].default)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.workers > 1 and not self.redis_url:
            raise ValueError(
                "--workers above 1 needs --redis: the embedded store lives in one process"
            )
        if self.max_frame_bytes < 1024:
            raise ValueError("max_frame_bytes must be at least 1024")
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise ValueError("admin_token must be at least 16 characters")
        if self.answer_deadline_s <= 0:
            raise ValueError("answer_deadline_s must be above 0")
        if self.max_in_flight < 0:
            raise ValueError("max_in_flight must be 0 (no bound) or more")
        if self.in_flight_budget_s < 0:
            raise ValueError("in_flight_budget_s must be 0 (off) or more")
        if self.resend_burst < 0:
            raise ValueError("resend_burst must be 0 or more")
        self._check_address_limits()
        self._check_transport()
        if self.redis_breaker_failures < 1:
            raise ValueError("redis_breaker_failures must be at least 1")
        if self.erasure_tombstone_days < 1:
            raise ValueError("erasure_tombstone_days must be at least 1")
        if self.reload_timeout_s <= 0:
            raise ValueError("reload_timeout_s must be above 0")

    def _check_address_limits(self) -> None:
        if self.max_connections_per_address < 0 or self.max_messages_per_s_per_address < 0:
            raise ValueError("per-address limits must be 0 (off) or more")
        if 0 < self.max_messages_per_s_per_address < 0.5:  # a bucket of 2 x rate < 1 token
            raise ValueError("max_messages_per_s_per_address below 0.5 lets nothing through")
        if self.max_tracked_addresses < 1:
            raise ValueError("max_tracked_addresses must be at least 1")
        parse_trusted_proxies(self.trusted_proxies)  # ValueError naming the bad entry
        if self.geoip_db and not Path(self.geoip_db).is_file():
            raise ValueError(f"geoip_db: no file at {self.geoip_db!r}")
        if self.country_header and not _HEADER.match(self.country_header):
            raise ValueError(f"country_header: {self.country_header!r} is not a header name")

    def _check_transport(self) -> None:
        if self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be above 0")
        if self.max_header_bytes < 1024:
            raise ValueError("max_header_bytes must be at least 1024")
        if self.max_open_files < 0:
            raise ValueError("max_open_files must be 0 (the hard limit) or more")
        if self.open_files_reserve < 16:
            raise ValueError("open_files_reserve must be at least 16")

    def to_env(self) -> dict[str, str]:
        """The environment that recreates these settings (for worker processes)."""
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                env[f"EDGE_{f.name.upper()}"] = str(
                    int(value) if isinstance(value, bool) else value
                )
        return env

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _convert(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise ValueError(f"EDGE_{name.upper()}: expected a boolean, got {raw!r}")
        return lowered in _TRUE
    try:
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ValueError(f"EDGE_{name.upper()}: expected a number, got {raw!r}") from None
    if isinstance(default, Path):
        return Path(raw)
    return raw or None


def parse_trusted_proxies(value: str | None) -> tuple[IPNetwork, ...]:
    """``"127.0.0.1, ::1, 10.0.0.0/8"`` -> networks. None or "" trusts no proxy.
    Raises ``ValueError`` naming the bad entry."""
    networks: list[IPNetwork] = []
    for entry in (value or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"trusted_proxies: {entry!r} is not an IP address or network"
            ) from None
    return tuple(networks)
