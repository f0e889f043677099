"""Which campaigns the engine must pass over for want of a coupon: the
generated coupons need the site's secret; a pool that ran dry is passed over
too (edge.widgets.service.WidgetService.unavailable)."""

from __future__ import annotations

import dataclasses

from edge.config.sites import load_site
from edge.stores.coupons import MemoryPools
from edge.stores.signals import MemorySignalStore
from edge.stores.stats import MemoryStats
from edge.widgets.service import WidgetService
from tests.decisioning.test_engine import DEMO

GENERATED = {"welcome-coupon", "winback-high-value", "winback"}


def test_generated_coupons_need_the_secret_and_dry_pools_are_passed_over() -> None:
    site = load_site(DEMO)
    service = WidgetService(MemoryPools(), MemorySignalStore(), MemoryStats())
    with_secret = dataclasses.replace(site, secret=b"s" * 32)
    without = dataclasses.replace(site, secret=None)
    assert service.unavailable(with_secret) == frozenset()
    assert service.unavailable(without) >= GENERATED
    assert service.unavailable(without) == service.unavailable(without)  # cached, the same
    service._empty[site.id] = {"pool-campaign"}
    assert service.unavailable(with_secret) == {"pool-campaign"}
    assert service.unavailable(without) >= GENERATED | {"pool-campaign"}
