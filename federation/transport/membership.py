"""Inbound membership handshakes: ``make_join``/``send_join`` (v2, v1), ``make_leave``/
``send_leave`` (v2, v1), ``make_knock``/``send_knock``, ``invite`` (v2), and the
``/query/directory`` lookup a remote join by alias starts with."""

from __future__ import annotations

from typing import Any

from federation.membership import ResidentMembership
from federation.ratelimit import FederationRateLimiter
from federation.transport.auth import add_federation_route
from homeserver.errors import MatrixError, invalid_param
from homeserver.handlers.directory import DirectoryHandler
from rest.request import HttpRequest, Response, json_response
from rest.router import Router


def _versions(request: HttpRequest, default: list[str]) -> list[str]:
    values = request.query.get(b"ver")
    if not values:
        return default
    try:
        return [v.decode("utf-8") for v in values]
    except UnicodeDecodeError:
        raise invalid_param("ver must be UTF-8") from None


def register(
    router: Router,
    membership: ResidentMembership,
    directory: DirectoryHandler,
    limiter: FederationRateLimiter | None = None,
) -> None:
    def make(kind: str, default_versions: list[str]) -> Any:
        async def handler(request: HttpRequest) -> dict[str, Any]:
            params = request.path_params
            return await membership.make_membership(
                request.requester,
                kind,
                params["roomId"],
                params["userId"],
                _versions(request, default_versions),
            )

        return handler

    async def send_join_v2(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        event = await membership.send_membership(
            request.requester, "join", params["roomId"], params["eventId"], request.json()
        )
        return await membership.send_join_answer(
            event, omit_members=request.query_bool("omit_members")
        )

    async def send_join_v1(request: HttpRequest) -> Response:
        params = request.path_params
        event = await membership.send_membership(
            request.requester, "join", params["roomId"], params["eventId"], request.json()
        )
        answer = await membership.send_join_answer(event, omit_members=False)
        # v1 answers [200, body], a quirk kept from the first versions of the API.
        return json_response([200, answer])

    async def send_leave_v2(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        await membership.send_membership(
            request.requester, "leave", params["roomId"], params["eventId"], request.json()
        )
        return {}

    async def send_leave_v1(request: HttpRequest) -> Response:
        await send_leave_v2(request)
        return json_response([200, {}])

    async def send_knock(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        event = await membership.send_membership(
            request.requester, "knock", params["roomId"], params["eventId"], request.json()
        )
        return {"knock_room_state": await membership.knock_room_state(event.room_id)}

    async def invite_v2(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        return await membership.on_invite(
            request.requester, params["roomId"], params["eventId"], request.json()
        )

    async def query_directory(request: HttpRequest) -> dict[str, Any]:
        alias = request.required_query_string("room_alias")
        if alias.partition(":")[2] != directory.server_name:
            raise MatrixError(404, "M_NOT_FOUND", f"Room alias {alias} is not on this server")
        mapping = await directory.resolve_alias(alias)
        return {"room_id": mapping.room_id, "servers": mapping.servers}

    routes: list[tuple[str, str, Any]] = [
        ("GET", "/_matrix/federation/v1/make_join/{roomId}/{userId}", make("join", ["1"])),
        ("PUT", "/_matrix/federation/v2/send_join/{roomId}/{eventId}", send_join_v2),
        ("PUT", "/_matrix/federation/v1/send_join/{roomId}/{eventId}", send_join_v1),
        ("GET", "/_matrix/federation/v1/make_leave/{roomId}/{userId}", make("leave", [])),
        ("PUT", "/_matrix/federation/v2/send_leave/{roomId}/{eventId}", send_leave_v2),
        ("PUT", "/_matrix/federation/v1/send_leave/{roomId}/{eventId}", send_leave_v1),
        ("GET", "/_matrix/federation/v1/make_knock/{roomId}/{userId}", make("knock", [])),
        ("PUT", "/_matrix/federation/v1/send_knock/{roomId}/{eventId}", send_knock),
        ("PUT", "/_matrix/federation/v2/invite/{roomId}/{eventId}", invite_v2),
        ("GET", "/_matrix/federation/v1/query/directory", query_directory),
    ]
    for method, path, handler in routes:
        add_federation_route(router, limiter, method, path, handler)
