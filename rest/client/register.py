"""``/register``, ``/register/available`` and the registration token validity check."""

from __future__ import annotations

import re
from typing import Any

from homeserver.handlers.register import RegistrationHandler
from rest.errors import MatrixError
from rest.request import HttpRequest
from rest.router import Router, client_patterns

_CLIENT_PREFIX = re.compile(r"^/_matrix/client/[^/]+")


def uia_uri(request: HttpRequest) -> str:
    """The operation a UIA session is bound to, the same under /v3 and /r0."""
    return _CLIENT_PREFIX.sub("", request.path.rstrip("/"), count=1)


def register(router: Router, registration: RegistrationHandler) -> None:
    async def post_register(request: HttpRequest) -> dict[str, Any]:
        kind = request.query_string("kind", "user") or "user"
        return await registration.register(
            request.json(),
            kind=kind,
            client_ip=request.client_ip,
            method=request.method,
            uri=uia_uri(request),
        )

    async def get_available(request: HttpRequest) -> dict[str, Any]:
        username = request.required_query_string("username")
        if not registration.registration_open:
            raise MatrixError(403, "M_FORBIDDEN", "Registration has been disabled")
        await registration.check_username(username.lower())
        return {"available": True}

    async def get_token_validity(request: HttpRequest) -> dict[str, Any]:
        token = request.required_query_string("token")
        return {"valid": await registration.token_validity(token)}

    router.add("POST", client_patterns("/register"), post_register)
    router.add("GET", client_patterns("/register/available"), get_available)
    router.add(
        "GET",
        "/_matrix/client/v1/register/m.login.registration_token/validity",
        get_token_validity,
        ratelimit="rc_registration_token_validity",
    )
