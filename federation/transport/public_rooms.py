"""``GET/POST /_matrix/federation/v1/publicRooms``: our room directory for other servers.

The same list, filters and pagination tokens as the client endpoint (the directory
handler serves both). As Synapse, it is only served with
``allow_public_rooms_over_federation``; otherwise 403 M_FORBIDDEN.
"""

from __future__ import annotations

from typing import Any

from federation.ratelimit import FederationRateLimiter
from federation.transport.auth import add_federation_route
from homeserver.errors import MatrixError, invalid_param
from homeserver.handlers.directory import DirectoryHandler, PublicRoomsQuery
from rest.request import HttpRequest
from rest.router import Router

PATH = "/_matrix/federation/v1/publicRooms"


def register(
    router: Router,
    directory: DirectoryHandler,
    *,
    enabled: bool,
    limiter: FederationRateLimiter | None,
) -> None:
    def check_enabled() -> None:
        if not enabled:
            raise MatrixError(
                403, "M_FORBIDDEN", "This server does not share its room list over federation"
            )

    async def get_public_rooms(request: HttpRequest) -> dict[str, Any]:
        check_enabled()
        request.query_bool("include_all_networks")
        request.query_string("third_party_instance_id")
        query = PublicRoomsQuery(
            limit=request.query_int("limit"), since=request.query_string("since")
        )
        return await directory.get_public_rooms(query)

    async def post_public_rooms(request: HttpRequest) -> dict[str, Any]:
        check_enabled()
        body = request.json()
        limit = body.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise invalid_param("limit must be an integer")
        since = _optional_string(body, "since")
        _optional_string(body, "third_party_instance_id")
        search_filter = body.get("filter") or {}
        if not isinstance(search_filter, dict):
            raise invalid_param("filter must be an object")
        term = _optional_string(search_filter, "generic_search_term", "filter.")
        room_types = search_filter.get("room_types")
        if room_types is not None and (
            not isinstance(room_types, list)
            or not all(t is None or isinstance(t, str) for t in room_types)
        ):
            raise invalid_param("filter.room_types must be a list of strings or nulls")
        query = PublicRoomsQuery(
            limit=limit, since=since, generic_search_term=term, room_types=room_types
        )
        return await directory.get_public_rooms(query)

    add_federation_route(router, limiter, "GET", PATH, get_public_rooms)
    add_federation_route(router, limiter, "POST", PATH, post_public_rooms)


def _optional_string(body: dict[str, Any], key: str, prefix: str = "") -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid_param(f"{prefix}{key} must be a string")
    return value
