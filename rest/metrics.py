"""``GET /metrics`` (and Synapse's ``/_synapse/metrics``): Prometheus text format."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST

from homeserver.metrics import render_latest
from rest.request import HttpRequest, Response
from rest.router import Router


def register(router: Router) -> None:
    async def get_metrics(request: HttpRequest) -> Response:
        return Response(body=render_latest(), content_type=CONTENT_TYPE_LATEST)

    router.add("GET", ["/metrics", "/_synapse/metrics"], get_metrics)
