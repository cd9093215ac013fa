"""``PUT /rooms/{roomId}/typing/{userId}``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.typing import DEFAULT_TIMEOUT_MS, TypingHandler
from rest.errors import bad_json
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, typing: TypingHandler) -> None:
    async def set_typing(request: HttpRequest) -> dict[str, Any]:
        body = request.json()
        is_typing = body.get("typing")
        if not isinstance(is_typing, bool):
            raise bad_json("'typing' must be true or false")
        timeout = body.get("timeout", DEFAULT_TIMEOUT_MS)
        if is_typing and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0):
            raise bad_json("'timeout' must be a non-negative integer (milliseconds)")
        params = request.path_params
        await typing.set_typing(
            request.requester,
            params["roomId"],
            params["userId"],
            is_typing,
            timeout if isinstance(timeout, int) else DEFAULT_TIMEOUT_MS,
        )
        return {}

    router.add(
        "PUT", client_patterns("/rooms/{roomId}/typing/{userId}"), set_typing, auth=Auth.USER
    )
