"""Account data: ``/user/{userId}/account_data/{type}`` and
``/user/{userId}/rooms/{roomId}/account_data/{type}``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.account_data import AccountDataHandler
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, account_data: AccountDataHandler) -> None:
    async def get_global(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        return await account_data.get_global(request.requester, params["userId"], params["type"])

    async def put_global(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        await account_data.put_global(
            request.requester, params["userId"], params["type"], request.json()
        )
        return {}

    async def get_room(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        return await account_data.get_room(
            request.requester, params["userId"], params["roomId"], params["type"]
        )

    async def put_room(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        await account_data.put_room(
            request.requester, params["userId"], params["roomId"], params["type"], request.json()
        )
        return {}

    global_paths = client_patterns("/user/{userId}/account_data/{type}")
    room_paths = client_patterns("/user/{userId}/rooms/{roomId}/account_data/{type}")
    router.add("GET", global_paths, get_global, auth=Auth.USER)
    router.add("PUT", global_paths, put_global, auth=Auth.USER)
    router.add("GET", room_paths, get_room, auth=Auth.USER)
    router.add("PUT", room_paths, put_room, auth=Auth.USER)
