"""What both ingest paths (WebSocket and beacon) share: the services they
need, origin checks, and turning one ``events`` message into stored events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from edge.errors import ProtocolError
from edge.ledger import Hot, Ledger
from edge.profile import Profile
from edge.registry import SiteRegistry
from edge.settings import Settings
from edge.sites import Site
from edge.tracker import protocol as p
from edge.tracker.context import VisitContext
from edge.updates import check_event

# Event types after which the client wants to know what to show.
TRIGGERS = frozenset({"page_view", "product_view", "cart", "purchase", "identify", "custom"})

Decider = Callable[[Profile | None, VisitContext, Site, float, p.Batch], list[dict[str, Any]]]


def no_decisions(
    profile: Profile | None, ctx: VisitContext, site: Site, now: float, batch: p.Batch
) -> list[dict[str, Any]]:
    return []


@dataclass
class Counters:
    connections: int = 0
    messages: int = 0
    events: int = 0
    duplicates: int = 0
    refused: int = 0
    close_codes: dict[int, int] = field(default_factory=dict)


@dataclass
class Ingest:
    settings: Settings
    registry: SiteRegistry
    ledger: Ledger
    decide: Decider = no_decisions
    clock: Callable[[], float] = time.time
    counters: Counters = field(default_factory=Counters)

    def origin_allowed(self, site: Site, origin: str | None, host: str | None) -> bool:
        """Same-origin and listed origins pass; a missing Origin (not a browser)
        passes unless ``require_origin`` is set."""
        if origin is None:
            return not self.settings.require_origin
        origin = origin.rstrip("/").lower()
        if origin in site.allowed_origins:
            return True
        return host is not None and urlsplit(origin).netloc == host.lower()

    async def process(
        self,
        hot: Hot | None,
        batch: p.Batch,
        ctx: VisitContext,
        site: Site,
        *,
        decide: bool = True,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Store a batch; returns the error frames and the acknowledging answer.

        ``hot`` is None when nothing may be stored (no consent): events are then
        acknowledged and dropped. Beacons (``decide=False``) get a bare ``ack``:
        their page is going away. Raises ``TimeoutError`` if the store did not
        take the events within ``ack_timeout_s`` (they stay queued).
        """
        now = self.clock()
        errors = [p.error(e.code, e.message, seq=e.seq) for e in batch.errors]
        accepted = []
        for event in batch.events:
            try:
                check_event(event, site, now)
            except ProtocolError as exc:
                errors.append(p.error(exc.code, exc.message, seq=event.seq))
                continue
            accepted.append(event)
        self.counters.messages += 1
        self.counters.events += len(accepted)
        self.counters.refused += len(errors)
        profile: Profile | None = None
        if hot is not None:
            submitted = hot.submitted
            future = self.ledger.submit(hot, accepted, ctx, site, now)
            self.counters.duplicates += len(accepted) - (hot.submitted - submitted)
            profile = await asyncio.wait_for(asyncio.shield(future), self.settings.ack_timeout_s)
        seq = batch.highest_seq
        if decide and any(e.type in TRIGGERS for e in accepted):
            return errors, p.decisions(self.decide(profile, ctx, site, now, batch), seq=seq)
        return errors, p.ack(seq)
