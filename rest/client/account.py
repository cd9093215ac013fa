"""``/account/whoami``, ``/account/password``, ``/account/deactivate``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.account import AccountHandler
from rest.client.register import uia_uri
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, account: AccountHandler) -> None:
    async def whoami(request: HttpRequest) -> dict[str, Any]:
        return account.whoami(request.requester)

    async def change_password(request: HttpRequest) -> dict[str, Any]:
        await account.change_password(
            request.requester, request.json(), method=request.method, uri=uia_uri(request)
        )
        return {}

    async def deactivate(request: HttpRequest) -> dict[str, Any]:
        return await account.deactivate(
            request.requester, request.json(), method=request.method, uri=uia_uri(request)
        )

    router.add("GET", client_patterns("/account/whoami"), whoami, auth=Auth.USER)
    router.add("POST", client_patterns("/account/password"), change_password, auth=Auth.USER)
    router.add("POST", client_patterns("/account/deactivate"), deactivate, auth=Auth.USER)
