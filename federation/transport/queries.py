"""Inbound federation query ``GET /query/profile`` (``/query/directory`` is served by
federation/transport/membership.py, where remote alias joins live)."""

from __future__ import annotations

from typing import Any

from federation.ratelimit import FederationRateLimiter
from federation.transport.auth import add_federation_route
from homeserver.errors import invalid_param
from homeserver.handlers.profile import ProfileHandler
from homeserver.types import UserID
from rest.request import HttpRequest
from rest.router import Router

PREFIX = "/_matrix/federation/v1"


def register(
    router: Router,
    *,
    server_name: str,
    profiles: ProfileHandler,
    limiter: FederationRateLimiter | None,
) -> None:
    async def query_profile(request: HttpRequest) -> dict[str, Any]:
        user_id = request.required_query_string("user_id")
        field = request.query_string("field")
        try:
            parsed = UserID.parse(user_id)
        except ValueError:
            raise invalid_param(f"Invalid user ID {user_id!r}") from None
        if parsed.domain != server_name:
            raise invalid_param("User is not hosted on this homeserver")
        profile = await profiles.get_profile(user_id)  # 404 for an unknown user
        if field is None:
            return profile
        # The spec: a field the user has not set is left out of the answer.
        return {field: profile[field]} if field in profile else {}

    add_federation_route(router, limiter, "GET", PREFIX + "/query/profile", query_profile)
