"""The open-files budget of a worker process (docs/protocol.md, "Limits").

Every client connection holds a file descriptor. When a process runs out of
them, ``accept`` fails and so does everything else that opens a file: the
health probes, a Redis reconnect, a configuration reload ("Too many open
files"). So client connections get a budget below the process's limit:

- ``set_open_files_limit`` raises the soft ``RLIMIT_NOFILE`` to the hard one
  at start (``edge serve``; worker processes inherit it), or sets it to
  ``max_open_files`` when that is above 0;
- ``Budget.of`` keeps ``open_files_reserve`` descriptors (plus the Redis
  pool's ``redis_max_connections`` with ``--redis``) from client connections:
  log files, reloads of ``profiles/``, webhooks, the listening socket;
- a connection beyond ``Budget.connections`` is one of the ``spare`` ones
  (a quarter of the reserve): it may only ask for ``/healthz``, ``/readyz``
  or ``/metrics`` (answered, then closed) and anything else gets HTTP 503 with
  ``Retry-After``, within ``SPARE_TIMEOUT_S``; when the spare ones are all
  taken, the one that has waited longest for its request makes room, and only
  when none is waiting is a new connection closed at once
  (edge.tracker.transport).
"""

from __future__ import annotations

import contextlib
import resource
from dataclasses import dataclass

from edge.config.settings import Settings

SPARE_SHARE = 4  # a quarter of the reserve may hold connections over the budget
SPARE_TIMEOUT_S = 1.0  # a connection over the budget must send its request within this
# The kernel's own ceiling (fs.nr_open's default) when the hard limit is
# "unlimited", which Linux does not allow as a soft limit for open files.
UNLIMITED_FALLBACK = 1 << 20


def set_open_files_limit(wanted: int) -> int:
    """Set the soft ``RLIMIT_NOFILE``: to ``wanted`` (above 0, at most the
    hard limit), else as high as the hard limit allows; return the soft limit
    now in force (unchanged when the system refuses)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = UNLIMITED_FALLBACK if hard == resource.RLIM_INFINITY else hard
    target = min(wanted, ceiling) if wanted > 0 else ceiling
    if target != soft:
        with contextlib.suppress(ValueError, OSError):  # a container may refuse: keep it
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return open_files_limit()


def open_files_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return UNLIMITED_FALLBACK if soft == resource.RLIM_INFINITY else soft


@dataclass(frozen=True, slots=True)
class Budget:
    """Connections of one process: ``connections`` served as usual, then
    ``spare`` ones that get an answer and a close, within ``open_files``."""

    open_files: int
    reserve: int
    connections: int
    spare: int

    @classmethod
    def of(cls, open_files: int, settings: Settings) -> Budget:
        """Raises ``ValueError`` when the limit leaves no room for clients."""
        reserve = settings.open_files_reserve
        if settings.redis_url:
            reserve += settings.redis_max_connections
        connections = open_files - reserve
        if connections < 1:
            raise ValueError(
                f"the open-file limit ({open_files}) leaves no room for client connections "
                f"after the reserve ({reserve}: EDGE_OPEN_FILES_RESERVE"
                f"{' + EDGE_REDIS_MAX_CONNECTIONS' if settings.redis_url else ''}); "
                "raise the limit (ulimit -n, LimitNOFILE=) or EDGE_MAX_OPEN_FILES"
            )
        return cls(open_files, reserve, connections, settings.open_files_reserve // SPARE_SHARE)

    def describe(self) -> str:
        return (
            f"open files: limit {self.open_files}, client connections up to "
            f"{self.connections} per process (then HTTP 503; {self.spare} more for "
            f"/healthz, /readyz, /metrics), {self.reserve} kept for the server"
        )
