"""``GET /voip/turnServer``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.voip import VoipHandler
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, voip: VoipHandler) -> None:
    async def get_turn_server(request: HttpRequest) -> dict[str, Any]:
        requester = request.requester
        return voip.get_turn_server(requester.user_id, is_guest=requester.is_guest)

    router.add("GET", client_patterns("/voip/turnServer"), get_turn_server, auth=Auth.USER)
