"""``/login`` and ``/refresh``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.login import LoginHandler, Sessions
from rest.errors import MatrixError, missing_param
from rest.request import HttpRequest
from rest.router import Router, client_patterns


def register(router: Router, login: LoginHandler, sessions: Sessions) -> None:
    async def get_login(request: HttpRequest) -> dict[str, Any]:
        return {"flows": login.flows()}

    async def post_login(request: HttpRequest) -> dict[str, Any]:
        return await login.login(request.json())

    async def post_refresh(request: HttpRequest) -> dict[str, Any]:
        token = request.json().get("refresh_token")
        if token is None:
            raise missing_param("Missing 'refresh_token'")
        if not isinstance(token, str):
            raise MatrixError(400, "M_INVALID_PARAM", "'refresh_token' must be a string")
        return await sessions.refresh(token)

    router.add("GET", client_patterns("/login"), get_login)
    router.add("POST", client_patterns("/login"), post_login, ratelimit="rc_login.address")
    # /refresh exists from v1.3 on, so only under /v3.
    router.add("POST", client_patterns("/refresh", ("v3",)), post_refresh)
