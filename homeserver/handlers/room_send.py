"""Sending and redacting room events, and reading one event by ID."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.auth.power_levels import get_named_level, get_user_power_level
from homeserver.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.events.model import Event, JsonDict
from homeserver.handlers.client_events import SerializeEvents, simple_serializer
from homeserver.handlers.event_creation import EventCreator, EventSpec, request_hash
from homeserver.handlers.room_state import RoomStateHandler, check_event_type
from homeserver.types import Requester
from storage.events import EventStore, TxnRecord

# A function that tells whether ``user_id`` may see ``event`` (history visibility).
CanSee = Callable[[str, Event], Awaitable[bool]]


def _txn(requester: Requester, txn_id: str, scope: str, body: Any) -> TxnRecord:
    # Without a device (an application service), the spec scopes the ID to the token;
    # the user is the closest stable stand-in we have.
    return TxnRecord(
        user_id=requester.user_id,
        device_id=requester.device_id or "",
        txn_id=txn_id,
        request_hash=request_hash(scope, body),
        scope=scope,
    )


class RoomSendHandler:
    def __init__(
        self,
        *,
        event_store: EventStore,
        event_creator: EventCreator,
        room_state: RoomStateHandler,
        now_ms: Callable[[], int],
        can_see: CanSee | None = None,
        serialize: SerializeEvents | None = None,
    ) -> None:
        self.store = event_store
        self.creator = event_creator
        self.room_state = room_state
        self.now_ms = now_ms
        self.can_see = can_see or self._member_can_see
        self.serialize = serialize or simple_serializer(event_store, now_ms)
        # Checks a new event's m.relates_to (set once the relations handler exists).
        self.validate_relation: (
            Callable[[str, str, str, JsonDict], Awaitable[None]] | None
        ) = None

    async def send_message(
        self,
        requester: Requester,
        room_id: str,
        event_type: str,
        txn_id: str,
        content: JsonDict,
    ) -> Event:
        check_event_type(event_type)
        if event_type == "m.room.redaction":
            raise bad_json("Use /redact to send a redaction")
        txn = _txn(requester, txn_id, f"send/{room_id}/{event_type}", content)
        if self.validate_relation is not None and "m.relates_to" in content:
            await self.validate_relation(room_id, event_type, requester.user_id, content)
        return await self.creator.send(
            room_id, EventSpec(event_type, requester.user_id, content), txn=txn
        )

    async def redact(
        self,
        requester: Requester,
        room_id: str,
        event_id: str,
        txn_id: str,
        body: JsonDict,
    ) -> Event:
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise bad_json("reason must be a string")
        head = await self.store.get_room_head(room_id)
        if head is None:
            raise not_found(f"Unknown room {room_id}")
        original = await self.store.get_event(event_id)
        if original is None or original.room_id != room_id:
            raise not_found(f"Event {event_id} not found in room {room_id}")
        if original.type == "m.room.create":
            raise forbidden("Redacting create events is not permitted")
        sender = requester.user_id
        if original.sender != sender:
            # From v3 the auth rules let anyone on the original sender's server through
            # and leave the power check to whoever applies the redaction; as Synapse,
            # refuse it here rather than send a redaction that must not take effect.
            keys = [("m.room.create", ""), ("m.room.power_levels", "")]
            events = await self.store.get_events([head.state[k] for k in keys if k in head.state])
            auth_state = {e.state_pair: e for e in events.values()}
            level = get_user_power_level(sender, auth_state, head.room_version)
            if level < get_named_level("redact", auth_state, head.room_version):
                raise forbidden("You don't have permission to redact events")
        txn = _txn(requester, txn_id, f"redact/{room_id}/{event_id}", body)
        return await self.creator.send(
            room_id,
            EventSpec("m.room.redaction", sender, dict(body), redacts=event_id),
            txn=txn,
        )

    async def get_event(self, requester: Requester, room_id: str, event_id: str) -> JsonDict:
        if await self.store.get_room_version(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        event = await self.store.get_event(event_id)
        if (
            event is None
            or event.room_id != room_id
            or event.rejected_reason is not None
            or event.internal_metadata.get("outlier")
            or not await self.can_see(requester.user_id, event)
        ):
            raise not_found("Event not found")
        return (await self.serialize([event], requester))[0]

    async def _member_can_see(self, user_id: str, event: Event) -> bool:
        """Until history visibility filtering lands: members see the room's events, and
        former members the events up to their departure."""
        try:
            readable = await self.room_state.readable_state(user_id, event.room_id)
        except MatrixError:
            return False
        if readable.current:
            return True
        member_id = readable.state.get(("m.room.member", user_id))
        member = await self.store.get_event(member_id) if member_id is not None else None
        if member is None:
            return False
        left_at = member.internal_metadata.get("stream_ordering", 0)
        return int(event.internal_metadata.get("stream_ordering", 0)) <= int(left_at)
