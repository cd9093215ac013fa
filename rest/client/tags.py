"""Room tags: ``/user/{userId}/rooms/{roomId}/tags`` and ``.../tags/{tag}``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.account_data import AccountDataHandler
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, account_data: AccountDataHandler) -> None:
    async def get_tags(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        return await account_data.get_tags(request.requester, params["userId"], params["roomId"])

    async def put_tag(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        await account_data.put_tag(
            request.requester, params["userId"], params["roomId"], params["tag"], request.json()
        )
        return {}

    async def delete_tag(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        await account_data.delete_tag(
            request.requester, params["userId"], params["roomId"], params["tag"]
        )
        return {}

    router.add(
        "GET", client_patterns("/user/{userId}/rooms/{roomId}/tags"), get_tags, auth=Auth.USER
    )
    tag_paths = client_patterns("/user/{userId}/rooms/{roomId}/tags/{tag}")
    router.add("PUT", tag_paths, put_tag, auth=Auth.USER)
    router.add("DELETE", tag_paths, delete_tag, auth=Auth.USER)
