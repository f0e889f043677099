"""Signed webhook deliveries.

Each delivery is one event as JSON, POSTed with::

    Content-Type: application/json
    X-Edge-Event: <type>
    X-Edge-Delivery: <id, the same on every retry of one delivery>
    X-Edge-Timestamp: <unix seconds when this try was signed>
    X-Edge-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

A receiver recomputes the HMAC over the timestamp, a dot and the raw body
bytes, compares it in constant time, and refuses timestamps more than a few
minutes old (replays). ``verify`` below is that check.

A 2xx answer is success; anything else (other status, timeout, refused
connection) is retried after ``backoff_s``, doubled each time (capped at
five minutes), ``attempts`` tries in all; after the last one the delivery and
its last error go to the site's dead-letter list.

Requests go through the standard library (``urllib``) in a worker thread, so
the server needs no HTTP client dependency.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge import __version__
from edge.core.automation import AutomationEvent, Webhook

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 300.0
MAX_SKEW_S = 300.0


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
    max_skew_s: float = MAX_SKEW_S,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is fresh.
    ``headers`` keys in lower case."""
    timestamp = headers.get("x-edge-timestamp", "")
    given = headers.get("x-edge-signature", "")
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= max_skew_s and hmac.compare_digest(given, signature(secret, timestamp, body))


@dataclass(frozen=True, slots=True)
class Delivery:
    site: str
    hook: Webhook
    event: AutomationEvent
    id: str

    @classmethod
    def of(cls, site: str, hook: Webhook, event: AutomationEvent) -> Delivery:
        return cls(site, hook, event, uuid.uuid4().hex)

    @property
    def body(self) -> bytes:
        return json.dumps(self.event.to_json(), separators=(",", ":"), sort_keys=True).encode()


def post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
    """One POST; the status, or raises ``OSError`` (urllib's errors included)."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(
            request, timeout=timeout_s
        ) as answer:  # URL validated: http(s) only
            status: int = answer.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


Poster = Callable[[str, bytes, Mapping[str, str], float], int]


async def deliver(
    delivery: Delivery,
    secret: bytes,
    *,
    attempts: int,
    backoff_s: float,
    timeout_s: float,
    poster: Poster = post,
    clock: Callable[[], float] = time.time,
) -> tuple[bool, int, str]:
    """Try up to ``attempts`` times; (delivered, tries made, last error)."""
    body = delivery.body
    error = ""
    for attempt in range(1, attempts + 1):
        timestamp = str(int(clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"edge/{__version__}",
            "X-Edge-Event": delivery.event.type,
            "X-Edge-Delivery": delivery.id,
            "X-Edge-Timestamp": timestamp,
            "X-Edge-Signature": signature(secret, timestamp, body),
        }
        try:
            status = await asyncio.to_thread(poster, delivery.hook.url, body, headers, timeout_s)
        except (OSError, ValueError) as exc:  # refused, timed out, bad URL: retried
            error = f"{type(exc).__name__}: {exc}"
        else:
            if 200 <= status < 300:
                return True, attempt, ""
            error = f"HTTP {status}"
        if attempt < attempts:
            await asyncio.sleep(min(MAX_BACKOFF_S, backoff_s * 2 ** (attempt - 1)))
    return False, attempts, error


def dead_record(delivery: Delivery, tries: int, error: str, now: float) -> dict[str, Any]:
    return {
        "delivery": delivery.id,
        "url": delivery.hook.url,
        "tries": tries,
        "error": error,
        "failed_at": now,
        "event": delivery.event.to_json(),
    }
