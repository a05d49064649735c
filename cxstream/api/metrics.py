"""Prometheus metrics of the API (``GET /metrics``), in a registry of their own per app."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

#: request latency buckets (seconds): lookups are expected in single milliseconds
#: methods counted by name; any other (clients may send any token) counts as OTHER
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0
)  # fmt: skip


class ApiMetrics:
    """Requests by route and status, events by type/outcome/reason, latency, lookup errors."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "cxstream_api_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cxstream_api_request_seconds",
            "Time from request received to response ready, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "cxstream_api_events",
            "Posted events by type and outcome (accepted, rejected, failed) with the reason.",
            ["type", "outcome", "reason"],
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "cxstream_api_redis_errors",
            "Redis commands that failed (connection lost, timeout), by lookup.",
            ["lookup"],
            registry=self.registry,
        )
        self.profile_source = Counter(
            "cxstream_api_profile_lookups",
            "Profile lookups by where the answer came from (redis, worker, none, error).",
            ["source"],
            registry=self.registry,
        )
        self.worker_errors = Counter(
            "cxstream_api_worker_errors",
            "Profile fallbacks to the worker that failed (unreachable, bad answer).",
            registry=self.registry,
        )
        # labelled children, made on first use (``labels()`` costs more than the update)
        self._children: dict[tuple[Any, ...], Any] = {}

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        label = method if method in METHODS else "OTHER"
        key = (route, label, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(route, label, str(status)),
                self.latency.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def profile_from(self, source: str) -> None:
        """Count a profile lookup by where its answer came from."""
        key = ("profile_source", source)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.profile_source.labels(source)
        child.inc()
