"""Prometheus metrics exposed at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

INGEST_EVENTS = Counter("siyu_ingest_events_total", "Events received by the ingest API", ["outcome"])
INGEST_BATCH_SECONDS = Histogram(
    "siyu_ingest_request_seconds",
    "Time to answer one ingest request",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
LANE_GROUP_SIZE = Histogram(
    "siyu_lane_group_requests",
    "Requests a lane's writer handled in one transaction (callbacks, postings)",
    ["lane"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 500),
)
