"""Who may see which events of a room (spec: "Room History Visibility", Server behaviour).

``filter_events_for_user`` is the one check every path that returns events to a client
goes through; ``can_see_event`` asks it about one event. ``check_room_access`` is the
room-level gate of /messages and friends (member, departed member, or world-readable).

The rules are the spec's, applied to the state at each event (its state group), with
Synapse's refinements:

- a history visibility event is judged by the laxer of the setting before and after it,
  and the user's own membership event by the "more joined" of their membership before
  and after it (so a user always sees their own join, and their leave after being
  joined or invited);
- ``shared`` lets a user see an event they were not joined for only if they joined the
  room at some point after it (so a user who left sees nothing sent after they left,
  and a non-member peeking into a world-readable room sees only what was sent while it
  was world-readable);
- soft-failed events, dummy events and ``m.room.aliases`` are never sent to clients.

The cost is a handful of queries per call whatever the number of events: the events'
state groups, the two state entries that matter in each distinct group, the events those
entries name, and the user's memberships in the rooms involved. State groups never change,
so the first two are often known in memory already (always for events this process just
wrote to a room whose state it holds); then the memberships are read only if an event's
visibility depends on when the user last joined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.errors import forbidden
from homeserver.events.model import Event
from homeserver.util.gather import gather
from storage.events import EventStore
from storage.room_history import MembershipRecord, Position, RoomHistoryStore, position_of

HISTORY_VISIBILITY_KEY = ("m.room.history_visibility", "")

# Most to least permissive.
_VISIBILITY_ORDER = ("world_readable", "shared", "invited", "joined")
_MEMBERSHIP_ORDER = ("join", "invite", "knock", "leave", "ban")

# Never shown to clients (as Synapse): internal dummy events, and alias events which
# anyone could once send and which cannot be redacted reliably.
_HIDDEN_TYPES = frozenset({"org.matrix.dummy_event", "m.room.aliases"})


def _visibility_of(event: Event | None) -> str:
    if event is None:
        return "shared"
    value = event.content.get("history_visibility")
    return value if value in _VISIBILITY_ORDER else "shared"


def _membership_of(event: Event | None) -> str:
    if event is None:
        return "leave"
    value = event.membership
    return value if value in _MEMBERSHIP_ORDER else "leave"


@dataclass(frozen=True)
class _StateAt:
    visibility: str
    membership: str


async def filter_events_for_user(
    history: RoomHistoryStore, user_id: str, events: Sequence[Event]
) -> list[Event]:
    """The events of ``events`` that ``user_id`` may see, in the same order."""
    candidates = [
        event
        for event in events
        if event.type not in _HIDDEN_TYPES
        and not event.internal_metadata.get("soft_failed")
        and event.rejected_reason is None
    ]
    if not candidates:
        return []
    store = history.events
    in_timeline = [e for e in candidates if not e.internal_metadata.get("outlier")]
    in_timeline_ids = [e.event_id for e in in_timeline]
    member_key = ("m.room.member", user_id)
    state_keys = [HISTORY_VISIBILITY_KEY, member_key]
    memberships: dict[str, list[MembershipRecord]] | None = None
    known = history.cached_state_at_events(in_timeline_ids, state_keys)
    if known is not None:
        # The usual case for new events: the user's membership history is read below
        # only if an event's fate depends on when they last joined.
        groups, group_state = known
    else:
        # The state at the events and the user's membership history are independent reads.
        (groups, group_state), memberships = await gather(
            history.get_state_at_events(in_timeline_ids, state_keys),
            history.get_memberships(user_id, {e.room_id for e in in_timeline}),
        )
    # The state events those entries name, and what each own-membership or visibility
    # event replaced (its "before").
    needed: set[str] = set()
    for state in group_state.values():
        needed.update(state.values())
    for event in in_timeline:
        if _is_own_membership(event, user_id) or event.type == HISTORY_VISIBILITY_KEY[0]:
            replaced = event.unsigned.get("replaces_state")
            if isinstance(replaced, str):
                needed.add(replaced)
    state_events = await store.get_events(needed) if needed else {}

    decisions: list[bool | Position] = []
    for event in candidates:
        if event.internal_metadata.get("outlier"):
            # No state to judge by: only the user's own out-of-band membership (an invite
            # over federation, its rejection) is theirs to see.
            decisions.append(_is_own_membership(event, user_id))
            continue
        group = groups.get(event.event_id)
        state = group_state.get(group, {}) if group is not None else {}
        visibility_event = state.get(HISTORY_VISIBILITY_KEY)
        member_event = state.get(member_key)
        at = _StateAt(
            _visibility_of(state_events.get(visibility_event) if visibility_event else None),
            _membership_of(state_events.get(member_event) if member_event else None),
        )
        decisions.append(_decide(event, user_id, at, state_events))
    pending = [
        e.room_id for e, d in zip(candidates, decisions, strict=True) if not isinstance(d, bool)
    ]
    if pending and memberships is None:
        memberships = await history.get_memberships(user_id, set(pending))
    last_join = {
        room_id: _last_join(records) for room_id, records in (memberships or {}).items()
    }
    visible = []
    for event, decision in zip(candidates, decisions, strict=True):
        if isinstance(decision, bool):
            allowed = decision
        else:
            joined = last_join.get(event.room_id)
            allowed = joined is not None and joined > decision
        if allowed:
            visible.append(event)
    return visible


async def can_see_event(history: RoomHistoryStore, user_id: str, event: Event) -> bool:
    """Whether ``user_id`` may see ``event`` (e.g. for GET /rooms/{roomId}/event/{eventId})."""
    return bool(await filter_events_for_user(history, user_id, [event]))


def _is_own_membership(event: Event, user_id: str) -> bool:
    return event.type == "m.room.member" and event.state_key == user_id


def _last_join(records: Sequence[MembershipRecord]) -> Position | None:
    joins = [r.position for r in records if r.membership == "join"]
    return max(joins) if joins else None


def _decide(
    event: Event,
    user_id: str,
    at: _StateAt,
    state_events: dict[str, Event],
) -> bool | Position:
    """Whether the user may see ``event``, or, where that depends on whether they joined
    the room after it (``shared``), the event's position to compare their last join with."""
    visibility = at.visibility
    if event.type == HISTORY_VISIBILITY_KEY[0] and event.state_key == "":
        replaced = event.unsigned.get("replaces_state")
        before = _visibility_of(state_events.get(replaced) if isinstance(replaced, str) else None)
        if _VISIBILITY_ORDER.index(before) < _VISIBILITY_ORDER.index(visibility):
            visibility = before
    if visibility == "world_readable":
        return True

    membership = at.membership
    if _is_own_membership(event, user_id):
        membership = _membership_of(event)
        replaced = event.unsigned.get("replaces_state")
        before = _membership_of(state_events.get(replaced) if isinstance(replaced, str) else None)
        # A user always sees their own leave (or rejection) after being in or invited
        # to the room, or the room would never disappear from their client.
        if membership == "leave" and before in ("join", "invite"):
            return True
        if _MEMBERSHIP_ORDER.index(before) < _MEMBERSHIP_ORDER.index(membership):
            membership = before

    if membership == "join":
        return True
    if visibility == "shared":
        return position_of(event)
    if visibility == "invited":
        return membership == "invite"
    return False


@dataclass(frozen=True)
class RoomAccess:
    """How a user may read a room's history."""

    # "join", "leave" (a departed member), or None (a non-member of a world-readable room)
    membership: str | None
    # Their current membership event, if any.
    member_event: Event | None


async def check_room_access(
    store: EventStore,
    history: RoomHistoryStore,
    room_id: str,
    user_id: str,
    *,
    allow_departed: bool = True,
) -> RoomAccess:
    """Whether ``user_id`` may read ``room_id``'s history at all; 403 M_FORBIDDEN if not.

    Members may; departed members (left or kicked, not forgotten) may if
    ``allow_departed``; anyone may peek into a world-readable room. An unknown room gets
    the same 403 as a private one, so its existence is not revealed (as Synapse).
    """
    state = await store.get_current_state_ids(room_id)
    member_event_id = state.get(("m.room.member", user_id))
    member_event = await store.get_event(member_event_id) if member_event_id else None
    membership = member_event.membership if member_event is not None else None
    if membership == "join":
        return RoomAccess("join", member_event)
    if (
        allow_departed
        and membership == "leave"
        and member_event is not None
        and not await history.is_forgotten(member_event.event_id)
    ):
        return RoomAccess("leave", member_event)
    visibility_id = state.get(HISTORY_VISIBILITY_KEY)
    visibility_event = await store.get_event(visibility_id) if visibility_id else None
    if visibility_event is not None and _visibility_of(visibility_event) == "world_readable":
        return RoomAccess(None, member_event)
    raise forbidden(f"User {user_id} not in room {room_id}, and room previews are disabled")
