"""Reading room history: /messages, /context and timestamp_to_event.

History is walked in DAG order (depth, then arrival) with topological tokens; one query
fetches a page, one batch checks visibility, one batch serialises. When a backwards page
runs out of events, ``remote`` (federation/backfill.py, when federation is wired) may
fetch the history before the room's gaps from another server, and the page is read again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from homeserver.errors import forbidden, not_found
from homeserver.events.model import Event, JsonDict, StateKey
from homeserver.handlers.filters import RoomEventFilter
from homeserver.handlers.serialize import EventSerializer
from homeserver.handlers.visibility import check_room_access, filter_events_for_user
from homeserver.streams import RoomStreamToken, parse_room_token
from homeserver.types import Requester
from storage.events import EventStore
from storage.room_history import Position, RoomHistoryStore, position_of

# The most events one request may ask for (as Synapse).
MAX_LIMIT = 1000
DEFAULT_LIMIT = 10

# Where forward pagination with no ``from`` starts: before the create event (depth 1).
_ROOM_START: Position = (0, 0)


def _token(position: Position) -> str:
    return RoomStreamToken(position[0], position[1]).to_string()


def _backward_token(last: Position) -> str:
    # A backwards token sits just after the event it names, so to resume below ``last``
    # name the position one stream ordering before it.
    return _token((last[0], last[1] - 1))


class RemoteHistory(Protocol):
    """Room history held by other servers (federation/backfill.py)."""

    async def maybe_backfill(self, room_id: str, depth: int) -> bool:
        """Fetch the history before the room's gaps below ``depth``; whether any came."""
        ...

    async def timestamp_to_event(
        self, room_id: str, timestamp: int, backwards: bool, local: tuple[str, int] | None
    ) -> tuple[str, int] | None:
        """The closest event, ours (``local``) or a remote server's if closer."""
        ...


class PaginationHandler:
    def __init__(
        self, store: EventStore, history: RoomHistoryStore, serializer: EventSerializer
    ) -> None:
        self.store = store
        self.history = history
        self.serializer = serializer
        self.remote: RemoteHistory | None = None
        # (user_id) -> the users whose events that user has asked not to see.
        self.ignored_users: Callable[[str], Awaitable[frozenset[str]]] | None = None

    async def _hide_ignored(self, user_id: str, events: list[Event]) -> list[Event]:
        if self.ignored_users is None:
            return events
        ignored = await self.ignored_users(user_id)
        # State events stay: the room would not make sense without them.
        return [e for e in events if e.sender not in ignored or e.is_state()]

    async def _position(self, room_id: str, text: str, param: str) -> Position:
        token = parse_room_token(text, param)
        if token.topological is not None:
            return token.position
        return await self.history.get_topological_position(room_id, token.stream)

    async def get_messages(
        self,
        requester: Requester,
        room_id: str,
        *,
        backwards: bool,
        from_token: str | None,
        to_token: str | None,
        limit: int,
        event_filter: RoomEventFilter | None,
    ) -> JsonDict:
        user_id = requester.user_id
        access = await check_room_access(self.store, self.history, room_id, user_id)
        if from_token is not None:
            start = await self._position(room_id, from_token, "from")
        elif backwards:
            head = await self.store.get_room_head(room_id)
            max_depth = head.max_depth if head is not None else 0
            start = (max_depth, self.store.stream_ids.current_token())
        else:
            start = _ROOM_START
        end_bound = await self._position(room_id, to_token, "to") if to_token else None

        requested_start = start
        if access.membership == "leave" and access.member_event is not None:
            # A departed member sees nothing after they left: stop the walk there.
            left_at = position_of(access.member_event)
            if backwards:
                start = min(start, left_at)
            else:
                end_bound = left_at if end_bound is None else min(end_bound, left_at)

        # The spec: `start` is the `from` given, when given (and not moved).
        start_token = from_token if from_token and start == requested_start else _token(start)
        result: JsonDict = {"chunk": [], "start": start_token}
        if event_filter is not None and not event_filter.allows_room(room_id):
            return result
        query = event_filter.database_query() if event_filter is not None else None
        page = await self.history.paginate(
            room_id, start, backwards=backwards, limit=limit, to_position=end_bound, query=query
        )
        if (
            backwards
            and not page.limited
            and self.remote is not None
            and await self.remote.maybe_backfill(room_id, start[0])
        ):
            page = await self.history.paginate(
                room_id, start, backwards=True, limit=limit, to_position=end_bound, query=query
            )
        events = event_filter.filter(page.events) if event_filter is not None else page.events
        visible = await filter_events_for_user(self.history, user_id, events)
        visible = await self._hide_ignored(user_id, visible)
        if page.limited and page.last is not None:
            result["end"] = _backward_token(page.last) if backwards else _token(page.last)
        result["chunk"] = await self.serializer.serialize_events(visible, requester=requester)
        if event_filter is not None and event_filter.lazy_load_members and visible:
            members = await self._member_events(visible, [visible[0], visible[-1]])
            if members:
                result["state"] = await self.serializer.serialize_events(
                    members, requester=requester
                )
        return result

    async def get_context(
        self,
        requester: Requester,
        room_id: str,
        event_id: str,
        *,
        limit: int,
        event_filter: RoomEventFilter | None,
    ) -> JsonDict:
        user_id = requester.user_id
        event = await self.store.get_event(event_id)
        if (
            event is None
            or event.room_id != room_id
            or event.internal_metadata.get("outlier")
            or event.rejected_reason is not None
        ):
            raise not_found("Event not found.")
        if not await filter_events_for_user(self.history, user_id, [event]):
            raise forbidden("You don't have permission to access that event.")

        before_limit = limit // 2
        after_limit = limit - before_limit
        position = position_of(event)
        query = event_filter.database_query() if event_filter is not None else None
        room_allowed = event_filter is None or event_filter.allows_room(room_id)
        before = await self.history.paginate(
            room_id,
            (position[0], position[1] - 1),
            backwards=True,
            limit=before_limit if room_allowed else 0,
            query=query,
        )
        after = await self.history.paginate(
            room_id,
            position,
            backwards=False,
            limit=after_limit if room_allowed else 0,
            query=query,
        )
        events_before, events_after = before.events, after.events
        if event_filter is not None:
            events_before = event_filter.filter(events_before)
            events_after = event_filter.filter(events_after)
        events_before = await filter_events_for_user(self.history, user_id, events_before)
        events_after = await filter_events_for_user(self.history, user_id, events_after)
        events_before = await self._hide_ignored(user_id, events_before)
        events_after = await self._hide_ignored(user_id, events_after)

        last = events_after[-1] if events_after else event
        if event_filter is not None and event_filter.lazy_load_members:
            state_events = await self._member_events([*events_before, event, *events_after], [last])
        else:
            state_ids = await self.store.get_state_ids_after_event(last.event_id) or {}
            fetched = await self.store.get_events(state_ids.values())
            state_events = [fetched[e] for e in state_ids.values() if e in fetched]
        if event_filter is not None:
            state_events = event_filter.filter(state_events)

        serialize = self.serializer.serialize_events
        return {
            "events_before": await serialize(events_before, requester=requester),
            "event": (await serialize([event], requester=requester))[0],
            "events_after": await serialize(events_after, requester=requester),
            "state": await serialize(state_events, requester=requester),
            "start": _backward_token(before.last) if before.last else _backward_token(position),
            "end": _token(after.last) if after.last else _token(position),
        }

    async def timestamp_to_event(
        self, requester: Requester, room_id: str, timestamp: int, *, backwards: bool
    ) -> JsonDict:
        await check_room_access(
            self.store, self.history, room_id, requester.user_id, allow_departed=False
        )
        found = await self.history.get_event_for_timestamp(room_id, timestamp, backwards)
        if self.remote is not None:
            found = await self.remote.timestamp_to_event(room_id, timestamp, backwards, found)
        if found is None:
            direction = "before" if backwards else "after"
            raise not_found(f"Unable to find event {direction} {timestamp} in {room_id}")
        return {"event_id": found[0], "origin_server_ts": found[1]}

    async def _member_events(self, events: Sequence[Event], at: Sequence[Event]) -> list[Event]:
        """The membership events of the senders of ``events`` in the state after the
        first of ``at`` that has one (lazy-loading members)."""
        senders = sorted({e.sender for e in events})
        keys: list[StateKey] = [("m.room.member", sender) for sender in senders]
        groups = await self.history.get_state_groups({e.event_id for e in at})
        group_state = await self.history.get_state_for_groups(set(groups.values()), keys)
        chosen: dict[StateKey, str] = {}
        for anchor in reversed(at):
            group = groups.get(anchor.event_id)
            if group is not None:
                chosen.update(group_state.get(group, {}))
        fetched = await self.store.get_events(chosen.values())
        return [fetched[chosen[key]] for key in keys if key in chosen and chosen[key] in fetched]
