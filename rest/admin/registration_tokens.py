"""``/_synapse/admin/v1/registration_tokens``: list, create, get, update, delete."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.auth import Authenticator
from homeserver.handlers.registration_tokens import RegistrationTokenAdmin
from rest.request import HttpRequest
from rest.router import Auth, Router

PREFIX = "/_synapse/admin/v1/registration_tokens"


def register(router: Router, tokens: RegistrationTokenAdmin, auth: Authenticator) -> None:
    async def list_tokens(request: HttpRequest) -> dict[str, Any]:
        await auth.require_admin(request.requester)
        valid = request.query_string("valid")
        return await tokens.list(None if valid is None else request.query_bool("valid"))

    async def create(request: HttpRequest) -> dict[str, Any]:
        await auth.require_admin(request.requester)
        return await tokens.create(request.json())

    async def get(request: HttpRequest) -> dict[str, Any]:
        await auth.require_admin(request.requester)
        return await tokens.get(request.path_params["token"])

    async def update(request: HttpRequest) -> dict[str, Any]:
        await auth.require_admin(request.requester)
        return await tokens.update(request.path_params["token"], request.json())

    async def delete(request: HttpRequest) -> dict[str, Any]:
        await auth.require_admin(request.requester)
        return await tokens.delete(request.path_params["token"])

    router.add("GET", PREFIX, list_tokens, auth=Auth.USER)
    router.add("POST", f"{PREFIX}/new", create, auth=Auth.USER)
    router.add("GET", PREFIX + "/{token}", get, auth=Auth.USER)
    router.add("PUT", PREFIX + "/{token}", update, auth=Auth.USER)
    router.add("DELETE", PREFIX + "/{token}", delete, auth=Auth.USER)
