"""``/logout`` and ``/logout/all``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.login import LoginHandler
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, login: LoginHandler) -> None:
    async def logout(request: HttpRequest) -> dict[str, Any]:
        await login.logout(request.requester)
        return {}

    async def logout_all(request: HttpRequest) -> dict[str, Any]:
        await login.logout_all(request.requester)
        return {}

    router.add("POST", client_patterns("/logout"), logout, auth=Auth.USER)
    router.add("POST", client_patterns("/logout/all"), logout_all, auth=Auth.USER)
