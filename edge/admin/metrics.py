"""``/metrics`` in Prometheus' text format (prometheus-client).

Counters that the server keeps anyway (``Ingest.counters``, the ledger's
batches and conflicts, the site registry) are read at scrape time by a
collector, so the hot path pays for nothing but the latency histogram.
Each worker process reports its own figures, labelled with its ``pid``;
Prometheus sums them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.runtime.breaker import STATE_VALUES

if TYPE_CHECKING:
    from edge.runtime.supervisor import Supervisor
    from edge.tracker.ingest import Ingest
    from edge.tracker.limits import AddressLimits

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.pid = str(os.getpid())
        self.message_seconds = Histogram(
            "edge_message_seconds",
            "From receiving an events message to sending its answer (stored, decided).",
            ["site"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.store_seconds = Histogram(
            "edge_store_batch_seconds",
            "One group-commit batch written to the store.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )

    def observe(self, site: str, seconds: float) -> None:
        self.message_seconds.labels(site).observe(seconds)

    def watch(self, ingest: Ingest) -> None:
        self.registry.register(_IngestCollector(ingest, self.pid))

    def watch_limits(self, limits: AddressLimits) -> None:
        self.registry.register(_LimitsCollector(limits, self.pid))

    def watch_supervisor(self, supervisor: Supervisor) -> None:
        self.registry.register(_SupervisorCollector(supervisor, self.pid))

    def watch_transport(self) -> None:
        self.registry.register(_TransportCollector(self.pid))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _IngestCollector(Collector):
    def __init__(self, ingest: Ingest, pid: str) -> None:
        self.ingest = ingest
        self.pid = pid

    def collect(self) -> Iterator[Metric]:
        c = self.ingest.counters
        ledger = self.ingest.ledger
        labels = ["pid"]
        for name, doc, value in (
            ("edge_messages", "events messages handled", c.messages),
            ("edge_events", "events accepted (stored, or dropped for lack of consent)", c.events),
            ("edge_events_duplicate", "replayed events acknowledged, not applied", c.duplicates),
            ("edge_events_refused", "events refused with an error frame", c.refused),
            ("edge_bot_visits", "connections and beacons from robots (not profiled)", c.bots),
            (
                "edge_signals_dropped",
                "recommendation signal updates naming a product not in the catalog",
                self.ingest.widgets.signals_dropped,
            ),
            ("edge_store_batches", "group-commit batches written", ledger.batches),
            ("edge_store_conflicts", "lost compare-and-sets, re-applied", ledger.conflicts),
            ("edge_store_errors", "failed store writes (retried)", ledger.store_errors),
            ("edge_config_reloads", "site configuration reloads", self.ingest.registry.reloads),
        ):
            family = CounterMetricFamily(name, doc, labels=labels)
            family.add_metric([self.pid], value)
            yield family
        refusals = CounterMetricFamily(
            "edge_refusals",
            "what clients may not do, by error code (docs/operations.md)",
            labels=[*labels, "code"],
        )
        for reason, count in sorted(c.refusals.items()):
            refusals.add_metric([self.pid, reason], count)
        yield refusals
        closes = CounterMetricFamily(
            "edge_closes", "connections closed, by close code", labels=[*labels, "code"]
        )
        for code, count in sorted(c.close_codes.items()):
            closes.add_metric([self.pid, str(code)], count)
        yield closes
        breaker = getattr(ledger.store, "breaker", None)  # Redis only
        if breaker is not None:
            for name, doc, value in (
                ("edge_store_call_errors", "failed calls", getattr(ledger.store, "errors", 0)),
                ("edge_store_breaker_opened", "times the store's breaker opened", breaker.opened),
            ):
                family = CounterMetricFamily(name, doc, labels=labels)
                family.add_metric([self.pid], value)
                yield family
        admission = self.ingest.admission
        resends = CounterMetricFamily(
            "edge_resends_refused",
            "resends of refused messages refused again while the process had no room "
            "to spare (fresh messages first; also counted in edge_refusals, code busy)",
            labels=labels,
        )
        resends.add_metric([self.pid], admission.refused_resends)
        yield resends
        gauges: tuple[tuple[str, str, float], ...] = (
            ("edge_connections", "open WebSocket connections", c.connections),
            ("edge_in_flight", "messages being stored and decided now", admission.in_flight),
            (
                "edge_in_flight_limit",
                "the bound on messages in flight now (tightened while the loop runs late)",
                admission.in_flight_limit(),
            ),
            (
                "edge_loop_lag_seconds",
                "how late the event loop runs its timers",
                admission.lag.lag_s(),
            ),
            (
                "edge_cpu_per_message_seconds",
                "this process's CPU per answered message, last measured (0: not yet)",
                admission.cpu_per_message_s,
            ),
            ("edge_hot_profiles", "profiles held in this process", ledger.hot_count),
            ("edge_store_degraded", "1 while store writes fail", ledger.degraded),
            (
                "edge_store_breaker_state",
                "the store's circuit breaker: 0 closed, 1 half-open, 2 open",
                STATE_VALUES[breaker.state] if breaker is not None else 0,
            ),
        )
        for name, doc, reading in gauges:
            gauge = GaugeMetricFamily(name, doc, labels=labels)
            gauge.add_metric([self.pid], reading)
            yield gauge
        sites = GaugeMetricFamily(
            "edge_site_config_ok", "1 if the site's configuration is valid", labels=["site"]
        )
        registry = self.ingest.registry
        problems, _ = registry.report()  # with a reload over its budget
        for name in sorted({*registry.sites, *problems}):
            sites.add_metric([name], 0 if name in problems else 1)
        yield sites


class _LimitsCollector(Collector):
    """Per-address limits (edge.tracker.limits): refusals by limit and path."""

    def __init__(self, limits: AddressLimits, pid: str) -> None:
        self.limits = limits
        self.pid = pid

    def collect(self) -> Iterator[Metric]:
        refusals = CounterMetricFamily(
            "edge_address_refusals",
            "handshakes (ws), messages (ws) and beacons (collect) refused by a per-address limit",
            labels=["pid", "limit", "path"],
        )
        for (limit, path), count in sorted(self.limits.refused.items()):
            refusals.add_metric([self.pid, limit.value, path], count)
        yield refusals
        evicted = CounterMetricFamily(
            "edge_address_evictions",
            "idle addresses dropped from a full table before their bucket refilled",
            labels=["pid"],
        )
        evicted.add_metric([self.pid], self.limits.evicted)
        yield evicted
        tracked = GaugeMetricFamily(
            "edge_tracked_addresses", "client addresses in the limits table", labels=["pid"]
        )
        tracked.add_metric([self.pid], len(self.limits))
        yield tracked


class _SupervisorCollector(Collector):
    """Background tasks that crashed and were restarted (edge.runtime.supervisor)."""

    def __init__(self, supervisor: Supervisor, pid: str) -> None:
        self.supervisor = supervisor
        self.pid = pid

    def collect(self) -> Iterator[Metric]:
        crashes = CounterMetricFamily(
            "edge_task_crashes",
            "background tasks that ended with an unexpected error (then restarted)",
            labels=["pid", "task"],
        )
        for task, count in sorted(self.supervisor.crashes.items()):
            crashes.add_metric([self.pid, task], count)
        yield crashes


class _TransportCollector(Collector):
    """The transport's refusals and open-files budget (edge.tracker.transport);
    nothing before edge serve's protocols handled a connection."""

    def __init__(self, pid: str) -> None:
        self.pid = pid

    def collect(self) -> Iterator[Metric]:
        from edge.tracker import transport

        if transport.shared.cache_info().currsize == 0:  # no connection through them yet
            return
        process = transport.shared()
        counters = process.counters
        refusals = CounterMetricFamily(
            "edge_transport_refusals",
            "connections refused or closed by the transport, by reason",
            labels=["pid", "reason"],
        )
        for reason, count in (
            ("request_timeout", counters.request_timeouts),
            ("headers_too_large", counters.headers_too_large),
            ("over_open_files_budget", counters.over_budget),
            ("dropped_spare", counters.dropped),
        ):
            refusals.add_metric([self.pid, reason], count)
        yield refusals
        budget = GaugeMetricFamily(
            "edge_open_files_budget",
            "the open-files limit and the client connections it leaves",
            labels=["pid", "of"],
        )
        budget.add_metric([self.pid, "open_files"], process.budget.open_files)
        budget.add_metric([self.pid, "client_connections"], process.budget.connections)
        yield budget
