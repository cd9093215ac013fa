"""``/.well-known/matrix/client`` and ``/.well-known/matrix/server`` from config."""

from __future__ import annotations

from typing import Any

from homeserver.config import HomeserverConfig
from rest.request import HttpRequest, Response, json_response
from rest.router import Router


def register(router: Router, config: HomeserverConfig) -> None:
    client_document: dict[str, Any] = {
        **config.extra_well_known_client_content,
        "m.homeserver": {"base_url": config.public_baseurl.rstrip("/")},
    }

    async def get_client(request: HttpRequest) -> Response:
        return json_response(client_document)

    router.add("GET", "/.well-known/matrix/client", get_client)

    if config.serve_server_wellknown:
        # As Synapse: delegate federation to port 443 of the server name's host.
        host = config.server_name
        if not host.endswith("]") and ":" in host:
            host = host.rsplit(":", 1)[0]
        server_document = {"m.server": f"{host}:443"}

        async def get_server(request: HttpRequest) -> dict[str, Any]:
            return server_document

        router.add("GET", "/.well-known/matrix/server", get_server)
