"""``/profile/{userId}`` and ``/profile/{userId}/{keyName}``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.profile import ProfileHandler
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, profiles: ProfileHandler) -> None:
    async def get_profile(request: HttpRequest) -> dict[str, Any]:
        return await profiles.get_profile(request.path_params["userId"])

    async def get_field(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        return await profiles.get_field(params["userId"], params["keyName"])

    async def put_field(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        await profiles.set_field(
            request.requester, params["userId"], params["keyName"], request.json()
        )
        return {}

    async def delete_field(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        await profiles.delete_field(request.requester, params["userId"], params["keyName"])
        return {}

    router.add("GET", client_patterns("/profile/{userId}"), get_profile)
    router.add("GET", client_patterns("/profile/{userId}/{keyName}"), get_field)
    router.add("PUT", client_patterns("/profile/{userId}/{keyName}"), put_field, auth=Auth.USER)
    router.add(
        "DELETE", client_patterns("/profile/{userId}/{keyName}"), delete_field, auth=Auth.USER
    )
