"""``/keys/upload``, ``/keys/query``, ``/keys/claim``, ``/keys/changes``,
``/keys/device_signing/upload`` and ``/keys/signatures/upload``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.cross_signing import CrossSigningHandler
from homeserver.handlers.e2e_keys import E2EKeysHandler
from rest.client.register import uia_uri
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, keys: E2EKeysHandler, cross_signing: CrossSigningHandler) -> None:
    async def upload(request: HttpRequest) -> dict[str, Any]:
        return await keys.upload(request.requester, request.json())

    async def query(request: HttpRequest) -> dict[str, Any]:
        return await keys.query(request.requester, request.json())

    async def claim(request: HttpRequest) -> dict[str, Any]:
        return await keys.claim(request.requester, request.json())

    async def changes(request: HttpRequest) -> dict[str, Any]:
        return await keys.changes(
            request.requester, request.query_string("from"), request.query_string("to")
        )

    async def device_signing_upload(request: HttpRequest) -> dict[str, Any]:
        await cross_signing.upload_keys(
            request.requester, request.json(), method=request.method, uri=uia_uri(request)
        )
        return {}

    async def signatures_upload(request: HttpRequest) -> dict[str, Any]:
        return await cross_signing.upload_signatures(request.requester, request.json())

    router.add("POST", client_patterns("/keys/upload"), upload, auth=Auth.USER)
    # Older clients put the device ID in the path; it must be the token's device anyway.
    router.add("POST", client_patterns("/keys/upload/{deviceId}"), upload, auth=Auth.USER)
    router.add("POST", client_patterns("/keys/query"), query, auth=Auth.USER)
    router.add("POST", client_patterns("/keys/claim"), claim, auth=Auth.USER)
    router.add("GET", client_patterns("/keys/changes"), changes, auth=Auth.USER)
    router.add(
        "POST",
        client_patterns("/keys/device_signing/upload"),
        device_signing_upload,
        auth=Auth.USER,
    )
    router.add(
        "POST", client_patterns("/keys/signatures/upload"), signatures_upload, auth=Auth.USER
    )
