"""What another server may see of a room (spec: "Room History Visibility", Server behaviour).

A server may see an event if any of its users could: under ``shared`` and
``world_readable`` visibility any server in the room may, under ``invited`` a server with
a member joined or invited at the event, under ``joined`` one with a member joined at it.
As Synapse, an event the server may not see is sent redacted rather than left out (the
asker still needs it to keep its copy of the graph whole), and an outlier, whose state we
do not hold, counts as ``shared``.

``check_server_in_room`` is the room-level gate: the asking server must have a joined
member in the room now, or the room must be world-readable; else 403 M_FORBIDDEN.
"""

from __future__ import annotations

from collections.abc import Sequence

from homeserver.errors import MatrixError
from homeserver.events.model import Event
from homeserver.events.redaction import prune_event
from homeserver.handlers.visibility import HISTORY_VISIBILITY_KEY
from storage.events import EventStore
from storage.federation_history import FederationHistoryStore
from storage.room_history import RoomHistoryStore


def _domain(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def _visibility(event: Event | None) -> str:
    value = event.content.get("history_visibility") if event is not None else None
    return value if value in ("world_readable", "shared", "invited", "joined") else "shared"


async def check_server_in_room(
    store: EventStore, federation_history: FederationHistoryStore, room_id: str, server: str
) -> None:
    """403 M_FORBIDDEN unless ``server`` has a joined member in ``room_id`` (or the room
    is world-readable). An unknown room gets the same answer."""
    if await store.get_room_version(room_id) is not None:
        if await federation_history.get_joined_members_of_server(room_id, server):
            return
        visibility = await store.get_current_state_event(room_id, *HISTORY_VISIBILITY_KEY)
        if _visibility(visibility) == "world_readable":
            return
    raise MatrixError(403, "M_FORBIDDEN", f"Host {server} not in room {room_id}")


async def filter_events_for_server(
    history: RoomHistoryStore, server: str, events: Sequence[Event], *, redact: bool = True
) -> list[Event]:
    """``events`` as ``server`` may have them, in the same order: each one it may not see
    redacted (or, without ``redact``, left out)."""
    store = history.events
    in_timeline = [e for e in events if not e.internal_metadata.get("outlier")]
    groups = await history.get_state_groups([e.event_id for e in in_timeline])
    visibility_state = await history.get_state_for_groups(
        set(groups.values()), [HISTORY_VISIBILITY_KEY]
    )
    visibility_ids = {s[HISTORY_VISIBILITY_KEY] for s in visibility_state.values() if s}
    visibility_events = await store.get_events(visibility_ids)
    group_visibility = {
        group: _visibility(visibility_events.get(state.get(HISTORY_VISIBILITY_KEY, "")))
        for group, state in visibility_state.items()
    }
    # Memberships matter only where the visibility is restricted; one query for the
    # member entries of those groups, one for the asker's users' member events.
    restricted = {g for g, v in group_visibility.items() if v in ("invited", "joined")}
    members_state = await history.get_state_for_groups(restricted, [], types=["m.room.member"])
    member_ids = {
        event_id
        for state in members_state.values()
        for (_, state_key), event_id in state.items()
        if _domain(state_key) == server
    }
    member_events = await store.get_events(member_ids)

    result: list[Event] = []
    for event in events:
        group = groups.get(event.event_id)
        visibility = group_visibility.get(group, "shared") if group is not None else "shared"
        visible = True
        if visibility in ("invited", "joined"):
            allowed = ("join", "invite") if visibility == "invited" else ("join",)
            state = members_state.get(group, {}) if group is not None else {}
            visible = any(
                member_events[event_id].membership in allowed
                for (_, state_key), event_id in state.items()
                if _domain(state_key) == server and event_id in member_events
            )
        if visible:
            result.append(event)
        elif redact:
            result.append(prune_event(event))
    return result
