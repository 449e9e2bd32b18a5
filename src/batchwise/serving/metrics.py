"""Prometheus metrics of the gateway, plus the same counts as JSON for reports.

Own registry (not the process-global one): two servers in one process (tests) must
not share counters. Names follow Prometheus conventions (``_total``, ``_seconds``).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from batchwise.serving.server import Server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7,
                   1.0, 1.5, 2.0, 3.0, 5.0, 10.0)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128, 256, 512, 1024)


class ServingMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("batchwise_requests", "Inference requests answered, by status",
                                ["app", "code"], registry=r)  # fmt: skip
        self.latency = Histogram("batchwise_request_duration_seconds",
                                 "End-to-end latency of answered requests", ["app"],
                                 buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.slo_met = Counter("batchwise_slo_met", "Requests answered 200 within their SLO",
                               ["app"], registry=r)  # fmt: skip
        self.rejected = Counter("batchwise_rejected", "Requests refused, by reason",
                                ["app", "reason"], registry=r)  # fmt: skip
        self.batch_size = Histogram("batchwise_batch_size", "Items per dispatched batch",
                                    ["group"], buckets=BATCH_BUCKETS, registry=r)  # fmt: skip
        self.cost = Counter("batchwise_cost", "Accrued cost (instance busy time x price book, "
                            "in the price book's currency)", ["group"], registry=r)  # fmt: skip
        self.instance_deaths = Counter("batchwise_instance_deaths",
                                       "Instances that died under a batch", ["group"],
                                       registry=r)  # fmt: skip
        self.attainment = Gauge("batchwise_slo_attainment",
                                "Share of answered requests within SLO (200 and on time)",
                                ["app"], registry=r)  # fmt: skip
        self.queue_depth = Gauge("batchwise_queue_depth", "Items buffered or waiting for an "
                                 "instance", ["group"], registry=r)  # fmt: skip
        self.instances = Gauge("batchwise_instances", "Instances by state", ["group", "state"],
                               registry=r)  # fmt: skip
        self.instance_vcpu = Gauge("batchwise_instance_vcpu", "vCPU each instance of the "
                                   "group runs with (the plan's, or more in a surge)",
                                   ["group"], registry=r)  # fmt: skip
        self._apps: dict[str, dict[str, float]] = defaultdict(
            lambda: {"answered": 0, "ok": 0, "slo_met": 0, "rejected": 0, "errors": 0}
        )

    def bind(self, server: Server) -> None:
        """Gauges read the server's state when scraped."""
        for g in server.groups:
            self.queue_depth.labels(g.name).set_function(g.queue_depth)
            self.instances.labels(g.name, "ready").set_function(g.pool.ready_count)
            self.instances.labels(g.name, "live").set_function(g.pool.live_count)
            self.instances.labels(g.name, "standby").set_function(g.pool.standby_count)
            self.instance_vcpu.labels(g.name).set_function(lambda g=g: g.live_fn.vcpu)

    def unbind(self, groups: list[Any]) -> None:
        """Forget retired groups' series (their names never come back)."""
        for g in groups:
            for metric, labels in ((self.queue_depth, (g.name,)),
                                   (self.instances, (g.name, "ready")),
                                   (self.instances, (g.name, "live")),
                                   (self.instances, (g.name, "standby")),
                                   (self.instance_vcpu, (g.name,))):  # fmt: skip
                with contextlib.suppress(KeyError):
                    metric.remove(*labels)

    def observe(self, app: str, seconds: float, code: int, slo: float | None,
                admitted: bool = True) -> None:  # fmt: skip
        """A request of a known app was answered ``code`` after ``seconds`` (refused: not
        ``admitted``, which excludes it from latency and attainment)."""
        st = self._apps[app]
        self.requests.labels(app, str(code)).inc()
        if not admitted:
            st["rejected"] += 1
            return
        st["answered"] += 1
        self.latency.labels(app).observe(seconds)
        if code == 200:
            st["ok"] += 1
            if slo is not None and seconds <= slo:
                st["slo_met"] += 1
                self.slo_met.labels(app).inc()
        else:
            st["errors"] += 1
        self.attainment.labels(app).set(st["slo_met"] / st["answered"])

    def app_stats(self) -> dict[str, Any]:
        return {app: dict(v) for app, v in self._apps.items()}

    def render(self) -> bytes:
        return generate_latest(self.registry)
