"""Server-side key backups: ``/room_keys/version[/{version}]`` and
``/room_keys/keys[/{roomId}[/{sessionId}]]``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.key_backup import KeyBackupHandler
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, backup: KeyBackupHandler) -> None:
    async def create_version(request: HttpRequest) -> dict[str, Any]:
        return await backup.create_version(request.requester, request.json())

    async def current_version(request: HttpRequest) -> dict[str, Any]:
        return await backup.get_version(request.requester, None)

    async def get_version(request: HttpRequest) -> dict[str, Any]:
        return await backup.get_version(request.requester, request.path_params["version"])

    async def put_version(request: HttpRequest) -> dict[str, Any]:
        await backup.update_version(
            request.requester, request.path_params["version"], request.json()
        )
        return {}

    async def delete_version(request: HttpRequest) -> dict[str, Any]:
        await backup.delete_version(request.requester, request.path_params["version"])
        return {}

    def _where(request: HttpRequest) -> tuple[str | None, str | None, str | None]:
        params = request.path_params
        return request.query_string("version"), params.get("roomId"), params.get("sessionId")

    async def put_keys(request: HttpRequest) -> dict[str, Any]:
        return await backup.put_keys(request.requester, *_where(request), request.json())

    async def get_keys(request: HttpRequest) -> dict[str, Any]:
        return await backup.get_keys(request.requester, *_where(request))

    async def delete_keys(request: HttpRequest) -> dict[str, Any]:
        return await backup.delete_keys(request.requester, *_where(request))

    router.add("POST", client_patterns("/room_keys/version"), create_version, auth=Auth.USER)
    router.add("GET", client_patterns("/room_keys/version"), current_version, auth=Auth.USER)
    version = client_patterns("/room_keys/version/{version}")
    router.add("GET", version, get_version, auth=Auth.USER)
    router.add("PUT", version, put_version, auth=Auth.USER)
    router.add("DELETE", version, delete_version, auth=Auth.USER)
    for path in (
        "/room_keys/keys",
        "/room_keys/keys/{roomId}",
        "/room_keys/keys/{roomId}/{sessionId}",
    ):
        patterns = client_patterns(path)
        router.add("PUT", patterns, put_keys, auth=Auth.USER)
        router.add("GET", patterns, get_keys, auth=Auth.USER)
        router.add("DELETE", patterns, delete_keys, auth=Auth.USER)
