"""``PUT /sendToDevice/{eventType}/{txnId}``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.to_device import ToDeviceHandler
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, to_device: ToDeviceHandler) -> None:
    async def send(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        await to_device.send(
            request.requester, params["eventType"], params["txnId"], request.json()
        )
        return {}

    router.add(
        "PUT",
        client_patterns("/sendToDevice/{eventType}/{txnId}"),
        send,
        auth=Auth.USER,
    )
