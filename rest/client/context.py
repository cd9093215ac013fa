"""``GET /rooms/{roomId}/context/{eventId}``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.filters import RoomEventFilter
from homeserver.handlers.pagination import PaginationHandler
from rest.client.messages import parse_limit
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, pagination: PaginationHandler) -> None:
    async def get_context(request: HttpRequest) -> dict[str, Any]:
        limit = parse_limit(request)
        event_filter = RoomEventFilter.from_query_param(request.query_string("filter"))
        return await pagination.get_context(
            request.requester,
            request.path_params["roomId"],
            request.path_params["eventId"],
            limit=limit,
            event_filter=event_filter,
        )

    router.add(
        "GET",
        client_patterns("/rooms/{roomId}/context/{eventId}"),
        get_context,
        auth=Auth.USER,
    )
