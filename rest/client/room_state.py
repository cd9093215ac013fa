"""Room state and members: ``/rooms/{roomId}/state``, ``/members``, ``/joined_members``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.room_state import RoomStateHandler
from homeserver.streams import parse_room_token
from rest.errors import invalid_param
from rest.request import HttpRequest, Response, json_response
from rest.router import Auth, Router, client_patterns


def register(router: Router, *, room_state: RoomStateHandler) -> None:
    async def get_state(request: HttpRequest) -> Response:
        events = await room_state.get_state(request.requester, request.path_params["roomId"])
        return json_response(events)

    async def get_state_event(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        event_format = request.query_string("format", "content")
        if event_format not in ("content", "event"):
            raise invalid_param("format must be 'content' or 'event'")
        return await room_state.get_state_event(
            request.requester,
            params["roomId"],
            params["eventType"],
            params.get("stateKey", ""),
            as_event=event_format == "event",
        )

    async def put_state_event(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        event = await room_state.send_state(
            request.requester,
            params["roomId"],
            params["eventType"],
            params.get("stateKey", ""),
            request.json(),
        )
        return {"event_id": event.event_id}

    async def members(request: HttpRequest) -> dict[str, Any]:
        at = request.query_string("at")
        chunk = await room_state.get_members(
            request.requester,
            request.path_params["roomId"],
            membership=request.query_string("membership"),
            not_membership=request.query_string("not_membership"),
            at_stream=parse_room_token(at, "at").stream if at else None,
        )
        return {"chunk": chunk}

    async def joined_members(request: HttpRequest) -> dict[str, Any]:
        return await room_state.get_joined_members(request.requester, request.path_params["roomId"])

    router.add("GET", client_patterns("/rooms/{roomId}/state"), get_state, auth=Auth.USER)
    # The state key is the rest of the path: it may be empty (no segment, or a trailing
    # slash) and may itself contain slashes.
    with_key = client_patterns("/rooms/{roomId}/state/{eventType}/{stateKey:path}")
    without_key = client_patterns("/rooms/{roomId}/state/{eventType}")
    router.add("GET", with_key + without_key, get_state_event, auth=Auth.USER)
    router.add(
        "PUT", with_key + without_key, put_state_event, auth=Auth.USER, ratelimit="rc_message"
    )
    router.add("GET", client_patterns("/rooms/{roomId}/members"), members, auth=Auth.USER)
    router.add(
        "GET", client_patterns("/rooms/{roomId}/joined_members"), joined_members, auth=Auth.USER
    )
