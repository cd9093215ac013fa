"""Reading and writing room state: ``/state``, ``/members``, ``/joined_members``, ``/joined_rooms``.

Who may read what: a joined member reads the current state; a member who left or was
banned reads the state as it was when they left; anyone reads a ``world_readable`` room.
Everyone else is refused (403), and an unknown room is 404.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.auth.server_acl import SERVER_ACL, server_allowed
from homeserver.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.events.model import Event, JsonDict
from homeserver.handlers.client_events import SerializeEvents, simple_serializer
from homeserver.handlers.directory import DirectoryHandler
from homeserver.handlers.event_creation import EventCreator, EventSpec
from homeserver.handlers.membership import MEMBER, MembershipHandler
from homeserver.types import Requester
from storage.events import EventStore
from storage.room_members import RoomMemberStore
from storage.state import StateMap

MEMBERSHIPS = ("join", "invite", "leave", "ban", "knock")
# Membership values a client may set through PUT /state/m.room.member/{userId}.
_STATE_API_ACTIONS = ("join", "invite", "leave", "ban", "knock")


@dataclass(frozen=True)
class ReadableState:
    state: StateMap
    # True when this is the room's current state (the reader is joined or the room is
    # world readable), False for the state at the reader's departure.
    current: bool


def check_event_type(event_type: str) -> None:
    if not event_type:
        raise invalid_param("The event type cannot be empty")
    if len(event_type.encode("utf-8")) > 255:
        raise MatrixError(400, "M_INVALID_PARAM", "The event type is over 255 bytes")


class RoomStateHandler:
    def __init__(
        self,
        *,
        event_store: EventStore,
        member_store: RoomMemberStore,
        event_creator: EventCreator,
        membership: MembershipHandler,
        directory: DirectoryHandler,
        now_ms: Callable[[], int],
        serialize: SerializeEvents | None = None,
    ) -> None:
        self.store = event_store
        self.members = member_store
        self.creator = event_creator
        self.membership = membership
        self.directory = directory
        self.now_ms = now_ms
        self.serialize = serialize or simple_serializer(event_store, now_ms)

    async def readable_state(self, user_id: str, room_id: str) -> ReadableState:
        head = await self.store.get_room_head(room_id)
        if head is None:
            raise not_found(f"Unknown room {room_id}")
        wanted = [
            head.state[key]
            for key in ((MEMBER, user_id), ("m.room.history_visibility", ""))
            if key in head.state
        ]
        events = await self.store.get_events(wanted)
        member = events.get(head.state.get((MEMBER, user_id), ""))
        membership = member.membership if member is not None else None
        if membership == "join":
            return ReadableState(head.state, True)
        visibility = events.get(head.state.get(("m.room.history_visibility", ""), ""))
        if visibility is not None and visibility.content.get("history_visibility") == (
            "world_readable"
        ):
            return ReadableState(head.state, True)
        if member is not None and membership in ("leave", "ban"):
            state = await self.store.get_state_ids_after_event(member.event_id)
            if state is not None:
                return ReadableState(state, False)
        raise forbidden(f"User {user_id} is not in room {room_id}")

    async def require_joined(self, user_id: str, room_id: str) -> None:
        head = await self.store.get_room_head(room_id)
        if head is None:
            raise not_found(f"Unknown room {room_id}")
        member_id = head.state.get((MEMBER, user_id))
        member = await self.store.get_event(member_id) if member_id is not None else None
        if member is None or member.membership != "join":
            raise forbidden(f"User {user_id} is not in room {room_id}")

    # --- reading ----------------------------------------------------------------------

    async def get_state(self, requester: Requester, room_id: str) -> list[JsonDict]:
        readable = await self.readable_state(requester.user_id, room_id)
        events = await self.store.get_events(readable.state.values())
        ordered = [events[event_id] for event_id in readable.state.values() if event_id in events]
        return await self.serialize(ordered, requester)

    async def get_state_event(
        self,
        requester: Requester,
        room_id: str,
        event_type: str,
        state_key: str,
        *,
        as_event: bool = False,
    ) -> JsonDict:
        readable = await self.readable_state(requester.user_id, room_id)
        event_id = readable.state.get((event_type, state_key))
        event = await self.store.get_event(event_id) if event_id is not None else None
        if event is None:
            raise not_found(f"Event not found: no {event_type} state with key {state_key!r}")
        serialized = (await self.serialize([event], requester))[0]
        if as_event:
            return serialized
        content: JsonDict = serialized["content"]
        return content

    async def get_members(
        self,
        requester: Requester,
        room_id: str,
        *,
        membership: str | None = None,
        not_membership: str | None = None,
        at_stream: int | None = None,
    ) -> list[JsonDict]:
        """The room's members; with ``at_stream`` (the ``at`` token), as of that position
        -- never later than a departed reader's leave."""
        for value, name in ((membership, "membership"), (not_membership, "not_membership")):
            if value is not None and value not in MEMBERSHIPS:
                raise invalid_param(f"{name} must be one of {', '.join(MEMBERSHIPS)}")
        readable = await self.readable_state(requester.user_id, room_id)
        if at_stream is not None:
            state = await self.store.get_state_ids_at_stream(room_id, at_stream)
            if state is not None and not readable.current:
                leave_id = readable.state.get((MEMBER, requester.user_id))
                leave = await self.store.get_event(leave_id) if leave_id else None
                left_at = int(leave.internal_metadata.get("stream_ordering", 0)) if leave else 0
                if at_stream > left_at:
                    state = readable.state
            readable = ReadableState(state if state is not None else {}, False)
        if readable.current:
            wanted = None if membership is None else [membership]
            rows = await self.members.get_current_members(room_id, wanted)
            member_ids = [row.event_id for row in rows if row.membership != not_membership]
        else:
            member_ids = [
                event_id for (t, _), event_id in sorted(readable.state.items()) if t == MEMBER
            ]
        fetched = await self.store.get_events(member_ids)
        events = [
            fetched[event_id]
            for event_id in member_ids
            if event_id in fetched
            and (membership is None or fetched[event_id].membership == membership)
            and (not_membership is None or fetched[event_id].membership != not_membership)
        ]
        return await self.serialize(events, requester)

    async def get_joined_members(self, requester: Requester, room_id: str) -> JsonDict:
        await self.readable_state(requester.user_id, room_id)
        rows = await self.members.get_current_members(room_id, ["join"])
        events = await self.store.get_events([row.event_id for row in rows])
        joined: JsonDict = {}
        for row in rows:
            event = events.get(row.event_id)
            content: Mapping[str, Any] = event.content if event is not None else {}
            displayname = content.get("displayname")
            avatar_url = content.get("avatar_url")
            joined[row.user_id] = {
                "display_name": displayname if isinstance(displayname, str) else None,
                "avatar_url": avatar_url if isinstance(avatar_url, str) else None,
            }
        return {"joined": joined}

    async def get_joined_rooms(self, requester: Requester) -> list[str]:
        return sorted(await self.store.get_rooms_for_user(requester.user_id))

    # --- writing ----------------------------------------------------------------------

    async def send_state(
        self,
        requester: Requester,
        room_id: str,
        event_type: str,
        state_key: str,
        content: JsonDict,
    ) -> Event:
        check_event_type(event_type)
        if len(state_key.encode("utf-8")) > 255:
            raise invalid_param("The state key is over 255 bytes")
        if event_type == MEMBER:
            return await self._send_member_state(requester, room_id, state_key, content)
        if await self.store.get_room_version(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        if event_type == "m.room.canonical_alias" and state_key == "":
            await self.directory.check_canonical_alias(room_id, content)
        if event_type == SERVER_ACL and state_key == "":
            if not server_allowed(content, self.creator.server_name):
                # As Synapse: this server would be cut off from its own room.
                raise MatrixError(
                    400, "M_UNKNOWN", "Can't create an ACL event that denies the local server"
                )
        return await self.creator.send(
            room_id, EventSpec(event_type, requester.user_id, content, state_key)
        )

    async def _send_member_state(
        self, requester: Requester, room_id: str, state_key: str, content: JsonDict
    ) -> Event:
        action = content.get("membership")
        if not isinstance(action, str) or action not in _STATE_API_ACTIONS:
            raise bad_json(f"membership must be one of {', '.join(_STATE_API_ACTIONS)}")
        extra = {k: v for k, v in content.items() if k not in ("membership", "reason")}
        reason = content.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise bad_json("reason must be a string")
        return await self.membership.update_membership(
            requester, state_key, room_id, action, reason=reason, content=extra
        )
