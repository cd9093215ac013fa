"""``GET /health``: 200 "OK" while the server is up (for load balancers and Docker)."""

from __future__ import annotations

from rest.request import HttpRequest, Response
from rest.router import Router


def register(router: Router) -> None:
    async def get_health(request: HttpRequest) -> Response:
        return Response(body=b"OK", content_type="text/plain; charset=utf-8")

    router.add("GET", "/health", get_health)
