"""``GET /sync``: what changed for a user since their token, or everything on a first sync.

The answer is computed from stream positions: a token says where each stream was when
the client last synced, and each section reads only what moved after it. Rooms are read
in batches (memberships, recent events, member counts, states) so an initial sync of a
user in hundreds of rooms costs a fixed number of queries, not some per room per event.

When nothing concerns the user yet, the request long-polls on the notifier, which wakes
it for its own user and rooms only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from homeserver.events.model import Event, JsonDict, StateKey
from homeserver.events.stripped_state import strip_event, stripped_state_ids
from homeserver.handlers.filters import Filter, RoomEventFilter, apply_event_fields
from homeserver.handlers.serialize import EventSerializer
from homeserver.handlers.visibility import filter_events_for_user
from homeserver.notifier import ROOM_STREAM, Notifier
from homeserver.streams import RoomStreamToken, StreamToken
from homeserver.types import Requester
from homeserver.util.gather import gather, value
from storage.events import EventStore
from storage.room_history import RoomHistoryStore
from storage.sync import MembershipRow, SyncStore

logger = logging.getLogger(__name__)

DEFAULT_TIMELINE_LIMIT = 10
MAX_TIMEOUT_MS = 10 * 60 * 1000


class StreamSource(Protocol):
    """A stream /sync follows besides room events (typing, receipts, account data...)."""

    name: str

    def current_position(self) -> int: ...


@dataclass
class SyncSections:
    """Providers of the sections other modules own; each is optional until it lands.

    Every provider gets the user, the rooms concerned and the token the client already
    has (None on an initial sync; each provider reads its own stream's part), and
    returns only what moved since.
    """

    streams: list[StreamSource] = field(default_factory=list)
    # (user_id, room_ids, since) -> {room_id: [ephemeral event]}
    ephemeral: list[
        Callable[[str, Sequence[str], StreamToken | None], Awaitable[dict[str, list[JsonDict]]]]
    ] = field(default_factory=list)
    # (user_id, since) -> [global account data event]
    global_account_data: list[Callable[[str, StreamToken | None], Awaitable[list[JsonDict]]]] = (
        field(default_factory=list)
    )
    # (user_id, since) -> {room_id: [room account data event]}
    room_account_data: list[
        Callable[[str, StreamToken | None], Awaitable[dict[str, list[JsonDict]]]]
    ] = field(default_factory=list)
    # (user_id, room_ids, since) -> [presence event]
    presence: (
        Callable[[str, Sequence[str], StreamToken | None], Awaitable[list[JsonDict]]] | None
    ) = None
    # (user_id, room_ids) -> {room_id: (counts, {thread_id: counts})}
    unread_counts: (
        Callable[[str, Sequence[str]], Awaitable[dict[str, tuple[JsonDict, dict[str, JsonDict]]]]]
        | None
    ) = None
    # (requester, since, now) -> extra top-level keys (to_device, device_lists, key
    # counts...); ``now`` is the response's next_batch, so nothing past it is handed out.
    device_sections: list[
        Callable[[Requester, StreamToken | None, StreamToken], Awaitable[JsonDict]]
    ] = field(default_factory=list)
    # (user_id) -> users whose events are hidden (m.ignored_user_list)
    ignored_users: Callable[[str], Awaitable[frozenset[str]]] | None = None


@dataclass(frozen=True)
class SyncRequest:
    requester: Requester
    since: StreamToken | None
    timeout_ms: int
    full_state: bool
    filter: Filter
    use_state_after: bool = False


class SyncHandler:
    def __init__(
        self,
        *,
        store: EventStore,
        history: RoomHistoryStore,
        sync_store: SyncStore,
        serializer: EventSerializer,
        notifier: Notifier,
        sections: SyncSections | None = None,
    ) -> None:
        self.store = store
        self.history = history
        self.sync_store = sync_store
        self.serializer = serializer
        self.notifier = notifier
        self.sections = sections or SyncSections()

    def current_token(self, since: StreamToken | None = None) -> StreamToken:
        positions = {source.name: source.current_position() for source in self.sections.streams}
        previous = dict(since.extra) if since is not None else {}
        extra = tuple(
            (name, positions.get(name, previous.get(name, 0))) for name in StreamToken.EXTRA_STREAMS
        )
        return StreamToken(RoomStreamToken(None, self.store.stream_ids.current_token()), extra)

    async def sync(self, request: SyncRequest) -> JsonDict:
        now = self.current_token(request.since)
        timeout = max(0, min(request.timeout_ms, MAX_TIMEOUT_MS))
        may_wait = request.since is not None and not request.full_state and timeout > 0
        result: JsonDict | None = None
        if not (may_wait and request.since is not None and _nothing_moved(request.since, now)):
            result = await self._compute(request, now)
            if not may_wait or not _is_empty(result):
                return result
        # else: no stream has moved since the client's token (a long-poll right after the
        # previous answer), so the response would be empty: wait first, compute once after.
        since_positions = {ROOM_STREAM: now.room_key.stream, **dict(now.extra)}
        room_ids = [
            row.room_id
            for row in await self.sync_store.get_current_memberships(request.requester.user_id)
            if row.membership in ("join", "invite", "knock")
        ]
        moved = await self.notifier.wait_for_change(
            request.requester.user_id, room_ids, since_positions, timeout
        )
        if not moved:
            return result if result is not None else await self._compute(request, now)
        # Answer from the original ``since``: the new token covers what woke us.
        return await self._compute(request, self.current_token(request.since))

    # --- the whole response -----------------------------------------------------------

    async def _compute(self, request: SyncRequest, now: StreamToken) -> JsonDict:
        user_id = request.requester.user_id
        since_room = request.since.room_key.stream if request.since is not None else None
        upto = now.room_key.stream
        room_filter = request.filter.room
        memberships, changes, ignored = await gather(
            self.sync_store.get_current_memberships(user_id),
            self.sync_store.get_membership_changes(user_id, since_room, upto)
            if since_room is not None
            else value([]),
            self.sections.ignored_users(user_id)
            if self.sections.ignored_users is not None
            else value(frozenset()),
        )
        # A membership written after ``now`` was read belongs to the next sync.
        memberships = [m for m in memberships if m.stream_ordering <= upto]
        changed_membership = {c.room_id: c for c in changes}

        joined: list[tuple[str, bool]] = []  # (room_id, treat as newly joined)
        invited: list[MembershipRow] = []
        knocked: list[MembershipRow] = []
        left: list[MembershipRow] = []
        for row in memberships:
            if not room_filter.allows_room(row.room_id) or row.forgotten:
                continue
            fresh = since_room is None or row.room_id in changed_membership
            if row.membership == "join":
                # Every joined room is a candidate: typing, receipts or account data may
                # have moved in a room without new events. _joined_rooms keeps those
                # with something to say.
                newly_joined = since_room is not None and row.stream_ordering > since_room
                joined.append((row.room_id, newly_joined))
            elif row.membership == "invite":
                if fresh:
                    invited.append(row)
            elif row.membership == "knock":
                if fresh:
                    knocked.append(row)
            elif row.membership in ("leave", "ban"):
                # A first sync lists departed rooms only when the filter asks for them; an
                # incremental one shows a departure that happened since the token.
                if since_room is None:
                    if room_filter.include_leave:
                        left.append(row)
                elif row.stream_ordering > since_room or (
                    request.full_state and room_filter.include_leave
                ):
                    left.append(row)

        async def rooms_section() -> JsonDict:
            rooms: JsonDict = {}
            join_section = await self._joined_rooms(request, now, joined, ignored)
            if join_section:
                rooms["join"] = join_section
            if invited:
                rooms["invite"] = await self._stripped_rooms(invited, "invite_state", ignored)
            if knocked:
                rooms["knock"] = await self._stripped_rooms(knocked, "knock_state", frozenset())
            leave_section = await self._left_rooms(request, now, left, ignored)
            if leave_section:
                rooms["leave"] = leave_section
            return rooms

        async def account_data_section() -> list[JsonDict]:
            account_data: list[JsonDict] = []
            for provider in self.sections.global_account_data:
                account_data.extend(await provider(user_id, request.since))
            return [e for e in account_data if request.filter.account_data.matches_dict(e)]

        async def presence_section() -> list[JsonDict]:
            if self.sections.presence is None:
                return []
            joined_ids = [m.room_id for m in memberships if m.membership == "join"]
            presence = await self.sections.presence(user_id, joined_ids, request.since)
            return [e for e in presence if request.filter.presence.matches_dict(e)]

        # The sections are independent reads: awaited together, their round trips to the
        # database overlap instead of queueing one after another.
        rooms, account_data, presence, *device_keys = await gather(
            rooms_section(),
            account_data_section(),
            presence_section(),
            *(
                device_section(request.requester, request.since, now)
                for device_section in self.sections.device_sections
            ),
        )
        response: JsonDict = {"next_batch": now.to_string(), "rooms": rooms}
        response["account_data"] = {"events": account_data}
        response["presence"] = {"events": presence}
        for keys in device_keys:
            response.update(keys)
        return response

    # --- joined rooms -----------------------------------------------------------------

    async def _joined_rooms(
        self,
        request: SyncRequest,
        now: StreamToken,
        joined: Sequence[tuple[str, bool]],
        ignored: frozenset[str],
    ) -> JsonDict:
        if not joined:
            return {}
        user_id = request.requester.user_id
        since_room = request.since.room_key.stream if request.since is not None else None
        upto = now.room_key.stream
        timeline_filter = request.filter.room.timeline
        limit = timeline_filter.limit or DEFAULT_TIMELINE_LIMIT
        room_ids = [room_id for room_id, _ in joined]
        full_rooms = {room_id for room_id, fresh in joined if fresh or request.full_state}
        if since_room is None:
            full_rooms = set(room_ids)

        async def ephemeral_section() -> dict[str, list[JsonDict]]:
            ephemeral: dict[str, list[JsonDict]] = {}
            for provider in self.sections.ephemeral:
                # Newly joined rooms get their ephemeral state in full, as on a first sync.
                for since in {request.since, None} if full_rooms else {request.since}:
                    wanted = room_ids if since is request.since else sorted(full_rooms)
                    for room_id, events in (await provider(user_id, wanted, since)).items():
                        if since is None or room_id not in full_rooms or request.since is None:
                            ephemeral.setdefault(room_id, []).extend(events)
            return ephemeral

        async def room_account_data_section() -> dict[str, list[JsonDict]]:
            room_account_data: dict[str, list[JsonDict]] = {}
            for room_provider in self.sections.room_account_data:
                for room_id, events in (await room_provider(user_id, request.since)).items():
                    room_account_data.setdefault(room_id, []).extend(events)
            return room_account_data

        async def rooms_changed() -> set[str]:
            if since_room is None:
                return set()
            known = self.store.rooms_changed_since(room_ids, since_room)
            if known is not None:
                return known
            return await self.sync_store.get_rooms_changed(since_room, upto)

        ephemeral, room_account_data, changed = await gather(
            ephemeral_section(), room_account_data_section(), rooms_changed()
        )
        if since_room is not None:
            room_ids = [
                r
                for r in room_ids
                if r in full_rooms or r in changed or ephemeral.get(r) or room_account_data.get(r)
            ]
            if not room_ids:
                return {}

        # Newly joined rooms read their timeline as on a first sync.
        incremental = [r for r in room_ids if r not in full_rooms]
        recent, recent_incremental = await gather(
            self.sync_store.get_recent_events(full_rooms, None, upto, limit + 1),
            self.sync_store.get_recent_events(incremental, since_room, upto, limit + 1)
            if incremental
            else value({}),
        )
        recent.update(recent_incremental)
        for room_id in room_ids:
            recent.setdefault(room_id, [])
        timelines = await self._timelines(user_id, recent, limit, timeline_filter, ignored)

        async def state_sections_at_gaps() -> dict[str, JsonDict]:
            # State at the token the client has, for the rooms whose timeline has a gap.
            since_events: dict[str, str] = {}
            gappy = [r for r in incremental if timelines[r].limited]
            if gappy and since_room is not None:
                since_events = await self.sync_store.get_last_events_at(gappy, since_room)
            return await self._state_sections(
                request, room_ids, full_rooms, timelines, since_events
            )

        # The summary (heroes, member counts) may be left out where it has not changed
        # (spec), as Synapse does: only where membership can have moved since the token.
        summary_rooms = [
            room_id
            for room_id in room_ids
            if room_id in full_rooms
            or timelines[room_id].limited
            or any(e.type == "m.room.member" for e in timelines[room_id].window)
        ]
        state_sections, summaries, counts, timelines_json = await gather(
            state_sections_at_gaps(),
            self.sync_store.get_member_summaries(summary_rooms),
            self.sections.unread_counts(user_id, room_ids)
            if self.sections.unread_counts is not None
            else value({}),
            self._serialize_per_room(
                request, {room_id: timelines[room_id].events for room_id in room_ids}
            ),
        )
        section: JsonDict = {}
        for room_id in room_ids:
            timeline = timelines[room_id]
            events_json = timelines_json[room_id]
            prev_batch = StreamToken(
                RoomStreamToken(None, timeline.start_stream - 1), now.extra
            ).to_string()
            room: JsonDict = {
                "timeline": {
                    "events": events_json,
                    "limited": timeline.limited,
                    "prev_batch": prev_batch,
                },
                "ephemeral": {"events": ephemeral.get(room_id, [])},
                "account_data": {"events": room_account_data.get(room_id, [])},
            }
            room.update(state_sections[room_id])
            summary = summaries.get(room_id)
            if summary is not None:
                heroes = [u for u in summary.first_members if u != user_id][:5]
                room["summary"] = {
                    "m.heroes": heroes,
                    "m.joined_member_count": summary.joined,
                    "m.invited_member_count": summary.invited,
                }
            room_counts = counts.get(room_id)
            if room_counts is not None:
                main, threads = room_counts
                if timeline_filter.unread_thread_notifications:
                    room["unread_notifications"] = main
                    room["unread_thread_notifications"] = threads
                else:
                    # A client that does not track threads sees their counts in the room's.
                    room["unread_notifications"] = {
                        key: main.get(key, 0) + sum(t.get(key, 0) for t in threads.values())
                        for key in ("notification_count", "highlight_count")
                    }
            else:
                room["unread_notifications"] = {"notification_count": 0, "highlight_count": 0}
            if (
                since_room is not None
                and room_id not in full_rooms
                and not timeline.events
                and not _has_state(room)
                and not room["ephemeral"]["events"]
                and not room["account_data"]["events"]
            ):
                continue
            section[room_id] = room
        return section

    async def _timelines(
        self,
        user_id: str,
        recent: Mapping[str, list[str]],
        limit: int,
        timeline_filter: RoomEventFilter,
        ignored: frozenset[str],
    ) -> dict[str, _Timeline]:
        all_ids = [event_id for ids in recent.values() for event_id in ids]
        events = await self.store.get_events(all_ids)
        visible = await filter_events_for_user(
            self.history, user_id, [events[e] for e in all_ids if e in events]
        )
        visible_ids = {e.event_id for e in visible}
        timelines = {}
        for room_id, ids in recent.items():
            limited = len(ids) > limit
            chosen = [events[e] for e in ids[-limit:] if e in visible_ids]
            chosen = [
                e
                for e in chosen
                if timeline_filter.matches(e) and (e.sender not in ignored or e.is_state())
            ]
            window = [events[e] for e in ids[-limit:] if e in events]
            start = int(window[0].internal_metadata["stream_ordering"]) if window else _EMPTY_START
            timelines[room_id] = _Timeline(chosen, limited, start, window)
        return timelines

    async def _state_sections(
        self,
        request: SyncRequest,
        room_ids: Sequence[str],
        full_rooms: Collection[str],
        timelines: Mapping[str, _Timeline],
        since_events: Mapping[str, str],
    ) -> dict[str, JsonDict]:
        """The ``state`` (or ``state_after``) of each room, as the spec defines them."""
        key = "state_after" if request.use_state_after else "state"
        # Where the state is read: the start of the timeline (before its first event),
        # or its end for state_after; with an empty timeline, the room now.
        # A room whose timeline continues the client's without a gap shows no state, so
        # its state is not read at all (the usual case for a long-poll waking up).
        with_state = {
            room_id
            for room_id in room_ids
            if room_id in full_rooms or timelines[room_id].limited or request.use_state_after
        }
        anchors: dict[str, str] = {}
        for room_id in room_ids:
            if room_id not in with_state:
                continue
            window = timelines[room_id].window
            if window:
                anchors[room_id] = (window[-1] if request.use_state_after else window[0]).event_id
        needed = set(anchors.values()) | set(since_events.values())
        states_after = await self.sync_store.get_states_after(needed)
        window_events = {e.event_id: e for t in timelines.values() for e in t.window}

        sections: dict[str, JsonDict] = {}
        to_fetch: dict[str, dict[StateKey, str]] = {}
        for room_id in room_ids:
            if room_id not in with_state:
                to_fetch[room_id] = {}
                continue
            timeline = timelines[room_id]
            anchor = anchors.get(room_id)
            if anchor is None:
                state = await self.store.get_current_state_ids(room_id)
            elif request.use_state_after:
                state = dict(states_after.get(anchor, {}))
            else:
                state = _state_before(window_events[anchor], states_after.get(anchor, {}))
            if room_id in full_rooms:
                wanted = state
            elif timeline.limited or request.use_state_after:
                at_since = since_events.get(room_id)
                base = states_after.get(at_since, {}) if at_since is not None else {}
                wanted = {k: v for k, v in state.items() if base.get(k) != v}
            else:
                wanted = {}
            if not request.use_state_after:
                in_timeline = {e.event_id for e in timeline.window}
                wanted = {k: v for k, v in wanted.items() if v not in in_timeline}
            wanted = self._filter_state(request, wanted, timeline)
            to_fetch[room_id] = wanted
        state_events = await self.store.get_events(
            {e for s in to_fetch.values() for e in s.values()}
        )
        ordered: dict[str, list[Event]] = {}
        for room_id, wanted in to_fetch.items():
            events = [state_events[e] for e in wanted.values() if e in state_events]
            events.sort(key=lambda e: int(e.internal_metadata.get("stream_ordering", 0)))
            ordered[room_id] = events
        for room_id, events_json in (await self._serialize_per_room(request, ordered)).items():
            sections[room_id] = {key: {"events": events_json}}
        return sections

    def _filter_state(
        self, request: SyncRequest, state: dict[StateKey, str], timeline: _Timeline
    ) -> dict[StateKey, str]:
        state_filter = request.filter.room.state
        result = {k: v for k, v in state.items() if state_filter.allows_type(k[0])}
        if state_filter.lazy_load_members:
            # Only the members needed to show the timeline's senders (and the user).
            senders = {e.sender for e in timeline.events} | {request.requester.user_id}
            result = {k: v for k, v in result.items() if k[0] != "m.room.member" or k[1] in senders}
        return result

    # --- invites, knocks and departures ------------------------------------------------

    async def _stripped_rooms(
        self, rows: Sequence[MembershipRow], key: str, ignored: frozenset[str]
    ) -> JsonDict:
        section: JsonDict = {}
        member_events = await self.store.get_events([r.event_id for r in rows])
        for row in rows:
            member_event = member_events.get(row.event_id)
            if member_event is None or member_event.sender in ignored:
                continue
            stored = member_event.unsigned.get(
                "invite_room_state" if key == "invite_state" else "knock_room_state"
            )
            if isinstance(stored, list):
                stripped = [s for s in stored if isinstance(s, dict)]
            else:
                state = await self.store.get_current_state_ids(row.room_id)
                ids = stripped_state_ids(state)
                state_events = await self.store.get_events(ids)
                stripped = [strip_event(state_events[i]) for i in ids if i in state_events]
            own = strip_event(member_event)
            own["event_id"] = member_event.event_id
            own["origin_server_ts"] = member_event.origin_server_ts
            section[row.room_id] = {key: {"events": [*stripped, own]}}
        return section

    async def _left_rooms(
        self,
        request: SyncRequest,
        now: StreamToken,
        rows: Sequence[MembershipRow],
        ignored: frozenset[str],
    ) -> JsonDict:
        """Rooms the user left, was kicked or banned from: the timeline up to that event."""
        if not rows:
            return {}
        user_id = request.requester.user_id
        since_room = request.since.room_key.stream if request.since is not None else None
        timeline_filter = request.filter.room.timeline
        limit = timeline_filter.limit or DEFAULT_TIMELINE_LIMIT
        section: JsonDict = {}
        for row in rows:
            # The leave event is the last thing this user may see of the room.
            recent = await self.sync_store.get_recent_events(
                [row.room_id], since_room, row.stream_ordering, limit + 1
            )
            recent.setdefault(row.room_id, [])
            timelines = await self._timelines(user_id, recent, limit, timeline_filter, ignored)
            timeline = timelines[row.room_id]
            full = since_room is None or request.full_state
            states = await self._state_sections(
                request, [row.room_id], {row.room_id} if full else set(), timelines, {}
            )
            prev_batch = StreamToken(
                RoomStreamToken(None, timeline.start_stream - 1), now.extra
            ).to_string()
            section[row.room_id] = {
                "timeline": {
                    "events": await self._serialize(request, timeline.events),
                    "limited": timeline.limited,
                    "prev_batch": prev_batch,
                },
                **states[row.room_id],
                "account_data": {"events": []},
            }
        return section

    async def _serialize_per_room(
        self, request: SyncRequest, events_by_room: Mapping[str, Sequence[Event]]
    ) -> dict[str, list[JsonDict]]:
        """Every room's events serialized in one batch: the serializer's lookups (relations,
        redactions, transaction IDs) then cost one round trip each, not one per room."""
        serialized = await self._serialize(
            request, [e for events in events_by_room.values() for e in events]
        )
        result: dict[str, list[JsonDict]] = {}
        start = 0
        for room_id, events in events_by_room.items():
            result[room_id] = serialized[start : start + len(events)]
            start += len(events)
        return result

    async def _serialize(self, request: SyncRequest, events: Sequence[Event]) -> list[JsonDict]:
        if request.filter.event_format == "federation":
            return [dict(e.pdu) for e in events]
        serialized = await self.serializer.serialize_events(
            events, requester=request.requester, include_room_id=False
        )
        fields = request.filter.event_fields
        return [apply_event_fields(e, fields) for e in serialized] if fields else serialized


_EMPTY_START = 1


@dataclass
class _Timeline:
    events: list[Event]  # what the client is sent (visible, filtered)
    limited: bool
    start_stream: int  # stream ordering of the first event in the window
    window: list[Event]  # every event of the window, for state boundaries


def _state_before(event: Event, state_after: Mapping[StateKey, str]) -> dict[StateKey, str]:
    before = dict(state_after)
    if event.is_state() and event.rejected_reason is None:
        replaced = event.unsigned.get("replaces_state")
        if isinstance(replaced, str):
            before[event.state_pair] = replaced
        else:
            before.pop(event.state_pair, None)
    return before


def _has_state(room: Mapping[str, Any]) -> bool:
    for key in ("state", "state_after"):
        section = room.get(key)
        if isinstance(section, dict) and section.get("events"):
            return True
    return False


def _nothing_moved(since: StreamToken, now: StreamToken) -> bool:
    return since.room_key.stream == now.room_key.stream and dict(since.extra) == dict(now.extra)


def _is_empty(result: Mapping[str, Any]) -> bool:
    if result.get("rooms"):
        return False
    for key in ("account_data", "presence", "to_device"):
        section = result.get(key)
        if isinstance(section, dict) and section.get("events"):
            return False
    device_lists = result.get("device_lists")
    return not (isinstance(device_lists, dict) and any(device_lists.values()))
