"""``GET/PUT /presence/{userId}/status``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.presence import PresenceHandler
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, presence: PresenceHandler) -> None:
    async def get_status(request: HttpRequest) -> dict[str, Any]:
        return await presence.get_status(request.requester, request.path_params["userId"])

    async def put_status(request: HttpRequest) -> dict[str, Any]:
        await presence.put_status(request.requester, request.path_params["userId"], request.json())
        return {}

    paths = client_patterns("/presence/{userId}/status")
    router.add("GET", paths, get_status, auth=Auth.USER)
    router.add("PUT", paths, put_status, auth=Auth.USER, ratelimit="rc_presence.per_user")
