"""``GET /rooms/{roomId}/messages`` and ``GET /v1/rooms/{roomId}/timestamp_to_event``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.filters import RoomEventFilter
from homeserver.handlers.pagination import DEFAULT_LIMIT, MAX_LIMIT, PaginationHandler
from rest.errors import invalid_param
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def parse_direction(request: HttpRequest, default: str = "f") -> bool:
    """The ``dir`` parameter; True for backwards."""
    value = request.query_string("dir", default)
    if value not in ("b", "f"):
        raise invalid_param("Query parameter 'dir' must be 'b' or 'f'")
    return value == "b"


def parse_limit(request: HttpRequest) -> int:
    limit = request.query_int("limit", DEFAULT_LIMIT)
    assert limit is not None
    if limit < 0:
        raise invalid_param("Query parameter 'limit' must not be negative")
    return min(limit, MAX_LIMIT)


def register(router: Router, pagination: PaginationHandler) -> None:
    async def get_messages(request: HttpRequest) -> dict[str, Any]:
        # `dir` is required since v1.3; like Synapse, an absent one means forwards.
        backwards = parse_direction(request)
        limit = parse_limit(request)
        event_filter = RoomEventFilter.from_query_param(request.query_string("filter"))
        return await pagination.get_messages(
            request.requester,
            request.path_params["roomId"],
            backwards=backwards,
            from_token=request.query_string("from") or None,
            to_token=request.query_string("to") or None,
            limit=limit,
            event_filter=event_filter,
        )

    async def timestamp_to_event(request: HttpRequest) -> dict[str, Any]:
        timestamp = request.query_int("ts")
        if timestamp is None:
            request.required_query_string("ts")
        assert timestamp is not None
        backwards = parse_direction(request)
        return await pagination.timestamp_to_event(
            request.requester, request.path_params["roomId"], timestamp, backwards=backwards
        )

    router.add("GET", client_patterns("/rooms/{roomId}/messages"), get_messages, auth=Auth.USER)
    router.add(
        "GET",
        "/_matrix/client/v1/rooms/{roomId}/timestamp_to_event",
        timestamp_to_event,
        auth=Auth.USER,
    )
