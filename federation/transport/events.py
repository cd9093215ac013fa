"""Inbound federation reads of a room's events: ``/event``, ``/state``, ``/state_ids``,
``/event_auth``, ``/backfill``, ``/get_missing_events`` and ``/timestamp_to_event``."""

from __future__ import annotations

from federation.event_server import MAX_BACKFILL, FederationEventServer
from federation.ratelimit import FederationRateLimiter
from federation.transport.auth import add_federation_route
from homeserver.errors import MatrixError, invalid_param
from homeserver.events.model import JsonDict
from rest.request import HttpRequest
from rest.router import Handler, Router

PREFIX = "/_matrix/federation/v1"


def register(
    router: Router, events: FederationEventServer, limiter: FederationRateLimiter | None
) -> None:
    async def get_event(request: HttpRequest) -> JsonDict:
        return await events.get_event(request.requester, request.path_params["eventId"])

    async def get_state(request: HttpRequest) -> JsonDict:
        return await events.get_state(
            request.requester,
            request.path_params["roomId"],
            request.required_query_string("event_id"),
        )

    async def get_state_ids(request: HttpRequest) -> JsonDict:
        return await events.get_state_ids(
            request.requester,
            request.path_params["roomId"],
            request.required_query_string("event_id"),
        )

    async def get_event_auth(request: HttpRequest) -> JsonDict:
        return await events.get_event_auth(
            request.requester, request.path_params["roomId"], request.path_params["eventId"]
        )

    async def get_backfill(request: HttpRequest) -> JsonDict:
        values = request.query.get(b"v") or []
        try:
            event_ids = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            raise invalid_param("Query parameter 'v' is not valid UTF-8") from None
        if not event_ids:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing query parameter 'v'")
        limit = request.query_int("limit")
        if limit is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing query parameter 'limit'")
        return await events.backfill(
            request.requester, request.path_params["roomId"], event_ids, min(limit, MAX_BACKFILL)
        )

    async def post_get_missing_events(request: HttpRequest) -> JsonDict:
        return await events.get_missing_events(
            request.requester, request.path_params["roomId"], request.json()
        )

    async def get_timestamp_to_event(request: HttpRequest) -> JsonDict:
        timestamp = request.query_int("ts")
        if timestamp is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing query parameter 'ts'")
        direction = request.required_query_string("dir")
        if direction not in ("f", "b"):
            raise invalid_param("Query parameter 'dir' must be 'f' or 'b'")
        return await events.timestamp_to_event(
            request.requester, request.path_params["roomId"], timestamp, direction == "b"
        )

    def add(method: str, path: str, handler: Handler) -> None:
        add_federation_route(router, limiter, method, PREFIX + path, handler)

    add("GET", "/event/{eventId}", get_event)
    add("GET", "/state/{roomId}", get_state)
    add("GET", "/state_ids/{roomId}", get_state_ids)
    add("GET", "/event_auth/{roomId}/{eventId}", get_event_auth)
    add("GET", "/backfill/{roomId}", get_backfill)
    add("POST", "/get_missing_events/{roomId}", post_get_missing_events)
    add("GET", "/timestamp_to_event/{roomId}", get_timestamp_to_event)
