"""Rooms: ``/createRoom``, ``/rooms/{roomId}/send``, ``/redact``, ``/event``, ``/upgrade``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.handlers.room_creation import RoomCreationHandler
from homeserver.handlers.room_send import RoomSendHandler
from homeserver.handlers.room_upgrade import RoomUpgradeHandler
from homeserver.ratelimit import Ratelimiter
from homeserver.room_services import RoomServices
from rest.client import membership as membership_routes
from rest.client import room_state as room_state_routes
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(
    router: Router,
    *,
    room_creation: RoomCreationHandler,
    room_send: RoomSendHandler,
    room_upgrade: RoomUpgradeHandler,
) -> None:
    async def create_room(request: HttpRequest) -> dict[str, Any]:
        return await room_creation.create_room(request.requester, request.json())

    async def send(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        event = await room_send.send_message(
            request.requester,
            params["roomId"],
            params["eventType"],
            params["txnId"],
            request.json(),
        )
        return {"event_id": event.event_id}

    async def redact(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        event = await room_send.redact(
            request.requester,
            params["roomId"],
            params["eventId"],
            params["txnId"],
            request.json(),
        )
        return {"event_id": event.event_id}

    async def get_event(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        return await room_send.get_event(request.requester, params["roomId"], params["eventId"])

    async def upgrade(request: HttpRequest) -> dict[str, Any]:
        new_room_id = await room_upgrade.upgrade(
            request.requester, request.path_params["roomId"], request.json()
        )
        return {"replacement_room": new_room_id}

    router.add(
        "POST",
        client_patterns("/createRoom"),
        create_room,
        auth=Auth.USER,
        ratelimit="rc_room_creation",
    )
    router.add(
        "PUT",
        client_patterns("/rooms/{roomId}/send/{eventType}/{txnId}"),
        send,
        auth=Auth.USER,
        ratelimit="rc_message",
    )
    router.add(
        "PUT",
        client_patterns("/rooms/{roomId}/redact/{eventId}/{txnId}"),
        redact,
        auth=Auth.USER,
        ratelimit="rc_message",
    )
    router.add("GET", client_patterns("/rooms/{roomId}/event/{eventId}"), get_event, auth=Auth.USER)
    router.add(
        "POST",
        client_patterns("/rooms/{roomId}/upgrade"),
        upgrade,
        auth=Auth.USER,
        ratelimit="rc_room_creation",
    )


def register_all(
    router: Router, services: RoomServices, ratelimiters: Mapping[str, Ratelimiter] | None = None
) -> None:
    """Every rooms endpoint: creation, sending, state, members and membership."""
    register(
        router,
        room_creation=services.creation,
        room_send=services.send,
        room_upgrade=services.upgrade,
    )
    room_state_routes.register(router, room_state=services.state)
    membership_routes.register(
        router, membership=services.membership, room_state=services.state, ratelimiters=ratelimiters
    )
