"""``GET /_matrix/federation/v1/version``: the server implementation's name and version."""

from __future__ import annotations

from typing import Any

from homeserver import __version__
from rest.request import HttpRequest
from rest.router import Router


def register(router: Router) -> None:
    async def get_version(request: HttpRequest) -> dict[str, Any]:
        return {"server": {"name": "Hearth", "version": __version__}}

    router.add("GET", "/_matrix/federation/v1/version", get_version)
