"""``GET /_matrix/key/v2/server``: this server's verify keys, signed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeserver.server_keys import ServerKeys
from rest.request import HttpRequest
from rest.router import Router


def register(router: Router, server_keys: ServerKeys, now_ms: Callable[[], int]) -> None:
    async def get_server_keys(request: HttpRequest) -> dict[str, Any]:
        return server_keys.key_document(now_ms())

    # The {keyId} form is deprecated but still asked for by older servers; the key ID is ignored.
    router.add("GET", ["/_matrix/key/v2/server", "/_matrix/key/v2/server/{keyId}"], get_server_keys)
