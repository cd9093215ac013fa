"""``POST /rooms/{roomId}/read_markers``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.read_markers import ReadMarkersHandler
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, read_markers: ReadMarkersHandler) -> None:
    async def post_read_markers(request: HttpRequest) -> dict[str, Any]:
        await read_markers.set_read_markers(
            request.requester, request.path_params["roomId"], request.json()
        )
        return {}

    router.add(
        "POST",
        client_patterns("/rooms/{roomId}/read_markers"),
        post_read_markers,
        auth=Auth.USER,
    )
