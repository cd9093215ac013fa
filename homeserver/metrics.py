"""Prometheus metrics shared across the server (served on the ``metrics`` resource)."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest

http_requests = Counter(
    "hearth_http_requests",
    "HTTP requests handled, by route pattern and response status",
    ["method", "route", "code"],
)
http_request_duration = Histogram(
    "hearth_http_request_duration_seconds",
    "Time to handle an HTTP request, by route pattern",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
http_requests_in_flight = Gauge(
    "hearth_http_requests_in_flight", "HTTP requests being handled right now"
)


def render_latest() -> bytes:
    return generate_latest(REGISTRY)
