"""Membership: ``/join``, ``/knock``, ``/rooms/{roomId}/{join,invite,leave,forget,kick,ban,unban}``
and ``/joined_rooms``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.errors import limit_exceeded
from homeserver.handlers.membership import MembershipHandler, optional_reason
from homeserver.handlers.room_state import RoomStateHandler
from homeserver.ratelimit import Ratelimiter
from rest.errors import MatrixError, missing_param
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns

JOIN_RATELIMIT = "rc_joins.local"


def _body(request: HttpRequest) -> dict[str, Any]:
    # Clients send no body at all to /leave or /forget as often as an empty object.
    return request.json() if request.body.strip() else {}


def register(
    router: Router,
    *,
    membership: MembershipHandler,
    room_state: RoomStateHandler,
    ratelimiters: Mapping[str, Ratelimiter] | None = None,
) -> None:
    limiters = ratelimiters or {}

    def _limit(name: str, key: str) -> None:
        limiter = limiters.get(name)
        retry_after_ms = limiter.attempt(key) if limiter is not None else None
        if retry_after_ms is not None:
            raise limit_exceeded(retry_after_ms)

    def _via(request: HttpRequest) -> list[str]:
        # Where to reach a room this server is not in: ``via`` (v1.12), ``server_name``.
        names = [*request.query.get(b"via", []), *request.query.get(b"server_name", [])]
        return [n.decode("utf-8", "replace") for n in names]

    async def join(
        request: HttpRequest, room_id: str, servers: list[str] | None = None
    ) -> dict[str, Any]:
        body = _body(request)
        if "third_party_signed" in body:
            raise MatrixError(
                400, "M_UNRECOGNIZED", "Third-party invites are not supported by this server"
            )
        requester = request.requester
        await membership.update_membership(
            requester,
            requester.user_id,
            room_id,
            "join",
            reason=optional_reason(body),
            servers=[*_via(request), *(servers or [])],
        )
        return {"room_id": room_id}

    async def join_by_id_or_alias(request: HttpRequest) -> dict[str, Any]:
        room_id, servers = await membership.resolve_room_and_servers(
            request.path_params["roomIdOrAlias"]
        )
        return await join(request, room_id, servers)

    async def join_by_id(request: HttpRequest) -> dict[str, Any]:
        return await join(request, request.path_params["roomId"])

    async def knock(request: HttpRequest) -> dict[str, Any]:
        body = _body(request)
        room_id, servers = await membership.resolve_room_and_servers(
            request.path_params["roomIdOrAlias"]
        )
        requester = request.requester
        await membership.update_membership(
            requester,
            requester.user_id,
            room_id,
            "knock",
            reason=optional_reason(body),
            servers=[*_via(request), *servers],
        )
        return {"room_id": room_id}

    async def invite(request: HttpRequest) -> dict[str, Any]:
        body = _body(request)
        if "user_id" not in body:
            if {"id_server", "medium", "address"} & body.keys():
                raise MatrixError(
                    400, "M_UNRECOGNIZED", "Third-party invites are not supported by this server"
                )
            raise missing_param("Missing user_id")
        # Synapse's three invite limits: per inviter (the route's), per room, per invitee.
        _limit("rc_invites.per_room", request.path_params["roomId"])
        _limit("rc_invites.per_user", str(body["user_id"]))
        await membership.update_membership(
            request.requester,
            body["user_id"],
            request.path_params["roomId"],
            "invite",
            reason=optional_reason(body),
        )
        return {}

    async def leave(request: HttpRequest) -> dict[str, Any]:
        body = _body(request)
        requester = request.requester
        await membership.update_membership(
            requester,
            requester.user_id,
            request.path_params["roomId"],
            "leave",
            reason=optional_reason(body),
        )
        return {}

    async def forget(request: HttpRequest) -> dict[str, Any]:
        _body(request)
        await membership.forget(request.requester, request.path_params["roomId"])
        return {}

    def on_target(action: str) -> Any:
        async def handler(request: HttpRequest) -> dict[str, Any]:
            body = _body(request)
            if "user_id" not in body:
                raise missing_param("Missing user_id")
            await membership.update_membership(
                request.requester,
                body["user_id"],
                request.path_params["roomId"],
                action,
                reason=optional_reason(body),
            )
            return {}

        return handler

    async def joined_rooms(request: HttpRequest) -> dict[str, Any]:
        return {"joined_rooms": await room_state.get_joined_rooms(request.requester)}

    router.add(
        "POST",
        client_patterns("/join/{roomIdOrAlias}"),
        join_by_id_or_alias,
        auth=Auth.USER,
        ratelimit=JOIN_RATELIMIT,
    )
    router.add(
        "POST",
        client_patterns("/rooms/{roomId}/join"),
        join_by_id,
        auth=Auth.USER,
        ratelimit=JOIN_RATELIMIT,
    )
    router.add(
        "POST",
        client_patterns("/knock/{roomIdOrAlias}"),
        knock,
        auth=Auth.USER,
        ratelimit=JOIN_RATELIMIT,
    )
    router.add(
        "POST",
        client_patterns("/rooms/{roomId}/invite"),
        invite,
        auth=Auth.USER,
        ratelimit="rc_invites.per_issuer",
    )
    router.add("POST", client_patterns("/rooms/{roomId}/leave"), leave, auth=Auth.USER)
    router.add("POST", client_patterns("/rooms/{roomId}/forget"), forget, auth=Auth.USER)
    for action in ("kick", "ban", "unban"):
        router.add(
            "POST",
            client_patterns(f"/rooms/{{roomId}}/{action}"),
            on_target(action),
            auth=Auth.USER,
        )
    router.add("GET", client_patterns("/joined_rooms"), joined_rooms, auth=Auth.USER)
