"""Shared-secret registration: ``GET/POST /_synapse/admin/v1/register``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.register import SharedSecretRegistration
from rest.request import HttpRequest
from rest.router import Router


def register(router: Router, shared_secret: SharedSecretRegistration) -> None:
    async def get_nonce(request: HttpRequest) -> dict[str, Any]:
        return {"nonce": shared_secret.new_nonce()}

    async def post_register(request: HttpRequest) -> dict[str, Any]:
        return await shared_secret.register(request.json())

    router.add("GET", "/_synapse/admin/v1/register", get_nonce)
    router.add("POST", "/_synapse/admin/v1/register", post_register)
