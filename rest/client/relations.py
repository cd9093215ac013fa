"""``GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`` and
``GET /v1/rooms/{roomId}/threads``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.relations import (
    RELATIONS_DEFAULT_LIMIT,
    RELATIONS_MAX_LIMIT,
    THREADS_DEFAULT_LIMIT,
    THREADS_MAX_LIMIT,
    RelationsHandler,
)
from rest.errors import invalid_param
from rest.request import HttpRequest
from rest.router import Auth, Router

_V1 = "/_matrix/client/v1"


def _limit(request: HttpRequest, default: int, maximum: int, minimum: int) -> int:
    limit = request.query_int("limit", default)
    assert limit is not None
    if limit < minimum:
        raise invalid_param(f"Query parameter 'limit' must be at least {minimum}")
    return min(limit, maximum)


def register(router: Router, relations: RelationsHandler) -> None:
    async def get_relations(request: HttpRequest) -> dict[str, Any]:
        direction = request.query_string("dir", "b")
        if direction not in ("b", "f"):
            raise invalid_param("Query parameter 'dir' must be 'b' or 'f'")
        limit = _limit(request, RELATIONS_DEFAULT_LIMIT, RELATIONS_MAX_LIMIT, 0)
        # The unstable name of MSC3981 too, as Synapse accepts it.
        recurse = request.query_bool("recurse") or request.query_bool("org.matrix.msc3981.recurse")
        params = request.path_params
        return await relations.get_relations(
            request.requester,
            params["roomId"],
            params["eventId"],
            rel_type=params.get("relType"),
            event_type=params.get("eventType"),
            from_token=request.query_string("from") or None,
            to_token=request.query_string("to") or None,
            limit=limit,
            backwards=direction == "b",
            recurse=recurse,
        )

    async def get_threads(request: HttpRequest) -> dict[str, Any]:
        include = request.query_string("include", "all")
        if include not in ("all", "participated"):
            raise invalid_param("Query parameter 'include' must be 'all' or 'participated'")
        # The spec: "an integer greater than zero".
        limit = _limit(request, THREADS_DEFAULT_LIMIT, THREADS_MAX_LIMIT, 1)
        return await relations.get_threads(
            request.requester,
            request.path_params["roomId"],
            participated_only=include == "participated",
            from_token=request.query_string("from") or None,
            limit=limit,
        )

    router.add(
        "GET",
        [
            _V1 + "/rooms/{roomId}/relations/{eventId}",
            _V1 + "/rooms/{roomId}/relations/{eventId}/{relType}",
            _V1 + "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}",
        ],
        get_relations,
        auth=Auth.USER,
    )
    router.add("GET", _V1 + "/rooms/{roomId}/threads", get_threads, auth=Auth.USER)
