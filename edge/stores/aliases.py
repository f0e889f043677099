"""Aliases: following a device to its customer's profile, and linking one.

The I/O shell around ``edge.core.merge`` (whose docstring explains the three steps
and why they are safe to retry and to race). Every step is a pure change
queued on a hot profile in the ledger, so it shares the ledger's group commit,
compare-and-set and re-apply-on-conflict with ordinary events.

Invariants:
  * a customer profile (``edge.core.identity.customer_visitor``) is never sealed:
    only a connection's own device id is ever linked, and device ids cannot
    take the form of customer ids; so following an alias is one hop;
  * a device profile is sealed before its data is merged, and compacted only
    after the merge was stored; whoever finds a sealed device with a pending
    merge finishes the merge before anything else.
"""

from __future__ import annotations

import asyncio

from edge.core.merge import compact, merge, seal
from edge.core.profile import Profile
from edge.core.site import Site
from edge.stores.ledger import Hot, Ledger


class Aliases:
    def __init__(self, ledger: Ledger, timeout_s: float) -> None:
        self.ledger = ledger
        self.timeout_s = timeout_s
        self.merges = 0  # device profiles merged into a customer's by this process

    async def resolve(self, site: Site, visitor: str, now: float) -> Hot:
        """The hot profile events of ``visitor`` go to: its own, or the
        customer profile it is aliased to (finishing an interrupted merge)."""
        hot = await self.ledger.open(site.id, visitor)
        profile = hot.current
        if profile is None or profile.merged_into is None:
            return hot
        try:
            if profile.merge_pending:
                await self._merge(hot, site, profile.merged_into, now)
        finally:
            self.ledger.release(hot)
        return await self.ledger.open(site.id, profile.merged_into)

    async def link(self, site: Site, device: str, target: str, now: float) -> Hot:
        """Alias ``device`` to the customer profile ``target``, merging the
        device's history into it the first time; returns ``target`` hot (the
        caller holds it and releases the one it had). Idempotent."""
        hot = await self.ledger.open(site.id, device)
        try:
            current = hot.current
            if current is not None and current.merge_pending and current.merged_into != target:
                # sealed for another customer and not merged yet: finish that first
                assert current.merged_into is not None
                await self._merge(hot, site, current.merged_into, now)
            await self._store(
                self.ledger.submit_change(hot, lambda p: seal(p, device, target, now), site, now)
            )
            if hot.current is not None and hot.current.merge_pending:
                await self._merge(hot, site, target, now)
        finally:
            self.ledger.release(hot)
        return await self.ledger.open(site.id, target)

    async def _merge(self, device: Hot, site: Site, target: str, now: float) -> None:
        snapshot = device.base  # sealed and stored: it can no longer change
        assert snapshot is not None and snapshot.merged_into == target
        customer = await self.ledger.open(site.id, target)
        try:
            await self._store(
                self.ledger.submit_change(
                    customer, lambda p: merge(p, snapshot, target, site, now), site, now
                )
            )
        finally:
            self.ledger.release(customer)
        await self._store(
            self.ledger.submit_change(device, lambda p: compact(p, target), site, now)
        )
        self.merges += 1

    async def _store(self, future: asyncio.Future[Profile | None]) -> Profile | None:
        return await self.ledger.settle(future, self.timeout_s)
