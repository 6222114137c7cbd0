"""The HTTP server's own metrics: requests by route and status, latency, and events
accepted or refused by source and reason (labels are names, never ids or values)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "custsync_http_requests",
    "HTTP requests answered",
    ["route", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "custsync_http_request_duration_seconds",
    "Time to answer one HTTP request",
    ["route"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
INGESTED = Counter(
    "custsync_ingest_events",
    "Events received over HTTP, by source and outcome",
    ["source", "outcome"],
    registry=REGISTRY,
)
