"""``GET /capabilities``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.capabilities import CapabilitiesHandler
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, capabilities: CapabilitiesHandler) -> None:
    async def get_capabilities(request: HttpRequest) -> dict[str, Any]:
        return capabilities.get_capabilities()

    router.add("GET", client_patterns("/capabilities"), get_capabilities, auth=Auth.USER)
