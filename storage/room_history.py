"""Reading a room's history: pages of events in DAG order, positions, state at events.

Every read here is one query per call whatever the number of events involved, so the
handlers above can page through history and check visibility without a query per event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.events.model import Event, StateKey
from homeserver.util.caches import LruCache
from storage.engine import Cursor, Database
from storage.events import EventStore
from storage.state import StateMap, read_state_groups

# A position in a room's DAG order: (depth, stream_ordering).
Position = tuple[int, int]

_CHUNK = 500
# A cached "no entry for this key in this group" (LruCache holds no None).
_ABSENT = ""


@dataclass(frozen=True)
class EventQuery:
    """The parts of a room event filter the database applies. ``None``: no constraint.

    A type ending in ``*`` matches every type with that prefix, as the spec's filters do.
    """

    types: Sequence[str] | None = None
    not_types: Sequence[str] = ()
    senders: Sequence[str] | None = None
    not_senders: Sequence[str] = ()


@dataclass(frozen=True)
class Page:
    events: list[Event]
    # Whether more events lie beyond the page in the direction of travel (within ``to``).
    limited: bool
    # The position of the last event of the page, if any.
    last: Position | None


@dataclass(frozen=True)
class MembershipRecord:
    event_id: str
    membership: str
    position: Position
    forgotten: bool


class RoomHistoryStore:
    def __init__(self, db: Database, events: EventStore) -> None:
        self.db = db
        self.events = events
        # (state group, state key) -> the event ID there, or _ABSENT: a group never changes.
        self._group_entries: LruCache[tuple[int, StateKey], str] = LruCache(20_000)

    async def paginate(
        self,
        room_id: str,
        from_position: Position,
        *,
        backwards: bool,
        limit: int,
        to_position: Position | None = None,
        query: EventQuery | None = None,
    ) -> Page:
        """Up to ``limit`` events of the room after ``from_position`` in the direction of
        travel (for backwards: at or before it, newest first; for forwards: strictly
        after it, oldest first), not beyond ``to_position``.

        Positions are "just after the event at (depth, stream)", as topological tokens.
        Outliers and rejected events are not part of the timeline.
        """
        if limit <= 0:
            return Page([], False, None)
        rows = await self.db.run_interaction(
            "paginate_room_events",
            _paginate,
            room_id,
            from_position,
            backwards,
            limit + 1,
            to_position,
            query or EventQuery(),
        )
        limited = len(rows) > limit
        rows = rows[:limit]
        fetched = await self.events.get_events([row[0] for row in rows])
        events = [fetched[row[0]] for row in rows if row[0] in fetched]
        last = (int(rows[-1][1]), int(rows[-1][2])) if rows else None
        return Page(events, limited, last)

    async def get_topological_position(self, room_id: str, stream: int) -> Position:
        """The DAG position matching room stream position ``stream``: the greatest depth
        among the room's events up to ``stream`` (how Synapse turns /sync's tokens into
        pagination tokens)."""
        rows = await self.db.execute(
            "get_topological_position",
            "SELECT COALESCE(MAX(depth), 0) FROM events"
            " WHERE room_id = ? AND stream_ordering <= ? AND outlier = ?",
            room_id,
            stream,
            False,
        )
        return (int(rows[0][0]) if rows else 0, stream)

    async def get_state_groups(self, event_ids: Collection[str]) -> dict[str, int]:
        """The state group of each event that has one (the state after it)."""
        if not event_ids:
            return {}
        return await self.db.run_interaction(
            "get_event_state_groups", _state_groups_of, list(event_ids)
        )

    async def get_state_at_events(
        self, event_ids: Collection[str], keys: Iterable[StateKey]
    ) -> tuple[dict[str, int], dict[int, StateMap]]:
        """``get_state_groups`` and then ``get_state_for_groups`` of those groups for
        ``keys``, in one transaction: one round trip on every /sync and /messages, none
        when this process already knows the answer (see ``cached_state_at_events``)."""
        if not event_ids:
            return {}, {}
        key_list = sorted(set(keys))
        cached = self.cached_state_at_events(event_ids, key_list)
        if cached is not None:
            return cached
        groups, group_state = await self.db.run_interaction(
            "get_state_at_events", _state_at_events, list(event_ids), key_list
        )
        self.events.remember_state_groups(groups)
        for group, state in group_state.items():
            for key in key_list:
                self._group_entries.set((group, key), state.get(key, _ABSENT))
        return groups, group_state

    def cached_state_at_events(
        self, event_ids: Collection[str], keys: Sequence[StateKey]
    ) -> tuple[dict[str, int], dict[int, StateMap]] | None:
        """What ``get_state_at_events`` answers, if every part of it is known in this
        process: the events' state groups and those groups' entries are immutable."""
        groups: dict[str, int] = {}
        group_state: dict[int, StateMap] = {}
        for event_id in event_ids:
            group = self.events.cached_state_group(event_id)
            if group is None:
                return None
            groups[event_id] = group
            if group in group_state:
                continue
            state: StateMap = {}
            whole: StateMap | None = None
            for key in keys:
                entry = self._group_entries.get((group, key))
                if entry is None:
                    if whole is None:
                        # The room's current group (its head) or a recently used one.
                        event = self.events.cached_event(event_id)
                        if event is not None:
                            whole = self.events.cached_group_state(group, event.room_id)
                        if whole is None:
                            return None
                    entry = whole.get(key, _ABSENT)
                    self._group_entries.set((group, key), entry)
                if entry != _ABSENT:
                    state[key] = entry
            group_state[group] = state
        return groups, group_state

    async def get_state_for_groups(
        self, groups: Collection[int], keys: Iterable[StateKey], types: Iterable[str] = ()
    ) -> dict[int, StateMap]:
        """For each group, the entries of its state whose key is in ``keys`` or whose
        type is in ``types``, all in one query."""
        groups = sorted(set(groups))
        key_list = sorted(set(keys))
        type_list = sorted(set(types))
        if not groups or (not key_list and not type_list):
            return {group: {} for group in groups}
        return await self.db.run_interaction(
            "get_filtered_state_for_groups",
            _filtered_state_for_groups,
            groups,
            key_list,
            type_list,
        )

    async def get_memberships(
        self, user_id: str, room_ids: Collection[str]
    ) -> dict[str, list[MembershipRecord]]:
        """Every membership event of ``user_id`` in each of ``room_ids``, in DAG order."""
        if not room_ids:
            return {}
        rooms = sorted(set(room_ids))
        rows = await self.db.run_interaction("get_user_memberships", _memberships, user_id, rooms)
        result: dict[str, list[MembershipRecord]] = defaultdict(list)
        for room_id, event_id, membership, depth, stream, forgotten in rows:
            result[room_id].append(
                MembershipRecord(event_id, membership, (int(depth), int(stream)), bool(forgotten))
            )
        for records in result.values():
            records.sort(key=lambda r: r.position)
        return dict(result)

    async def is_forgotten(self, membership_event_id: str) -> bool:
        rows = await self.db.execute(
            "is_membership_forgotten",
            "SELECT forgotten FROM room_memberships WHERE event_id = ?",
            membership_event_id,
        )
        return bool(rows and rows[0][0])

    async def get_event_for_timestamp(
        self, room_id: str, timestamp: int, backwards: bool
    ) -> tuple[str, int] | None:
        """The room's event closest to ``timestamp`` at or after it (or at or before it,
        ``backwards``), as (event ID, origin_server_ts)."""
        comparison, order = ("<=", "DESC") if backwards else (">=", "ASC")
        rows = await self.db.execute(
            "get_event_for_timestamp",
            "SELECT event_id, origin_server_ts FROM events"
            f" WHERE room_id = ? AND origin_server_ts {comparison} ?"
            " AND outlier = ? AND rejected_reason IS NULL"
            f" ORDER BY origin_server_ts {order}, stream_ordering {order} LIMIT 1",
            room_id,
            timestamp,
            False,
        )
        return (rows[0][0], int(rows[0][1])) if rows else None

    async def get_transaction_ids(
        self, user_id: str, device_id: str, event_ids: Collection[str]
    ) -> dict[str, str]:
        """The client transaction ID of each of ``event_ids`` sent from this device."""
        if not event_ids:
            return {}
        return await self.db.run_interaction(
            "get_transaction_ids", _transaction_ids, user_id, device_id, list(event_ids)
        )


def position_of(event: Event) -> Position:
    """The DAG position of a persisted event."""
    return (event.depth, int(event.internal_metadata.get("stream_ordering", 0)))


def _type_clause(types: Sequence[str], params: list[Any]) -> str:
    exact = [t for t in types if not t.endswith("*")]
    prefixes = [t[:-1] for t in types if t.endswith("*")]
    parts = []
    if exact:
        parts.append(f"type IN ({','.join('?' * len(exact))})")
        params.extend(exact)
    for prefix in prefixes:
        # substr, not LIKE: SQLite's LIKE ignores ASCII case and both treat _ and % specially.
        parts.append("substr(type, 1, ?) = ?")
        params.extend([len(prefix), prefix])
    return "(" + " OR ".join(parts) + ")" if parts else "(1 = 0)"


def _paginate(
    cursor: Cursor,
    room_id: str,
    from_position: Position,
    backwards: bool,
    limit: int,
    to_position: Position | None,
    query: EventQuery,
) -> list[tuple[Any, ...]]:
    params: list[Any] = [room_id, False]
    clauses = ["room_id = ?", "outlier = ?", "rejected_reason IS NULL"]
    depth, stream = from_position
    if backwards:
        clauses.append("(depth < ? OR (depth = ? AND stream_ordering <= ?))")
    else:
        clauses.append("(depth > ? OR (depth = ? AND stream_ordering > ?))")
    params.extend([depth, depth, stream])
    if to_position is not None:
        to_depth, to_stream = to_position
        if backwards:
            clauses.append("(depth > ? OR (depth = ? AND stream_ordering > ?))")
        else:
            clauses.append("(depth < ? OR (depth = ? AND stream_ordering <= ?))")
        params.extend([to_depth, to_depth, to_stream])
    if query.types is not None:
        clauses.append(_type_clause(query.types, params))
    if query.not_types:
        clauses.append("NOT " + _type_clause(query.not_types, params))
    if query.senders is not None:
        if query.senders:
            clauses.append(f"sender IN ({','.join('?' * len(query.senders))})")
            params.extend(query.senders)
        else:
            clauses.append("1 = 0")
    if query.not_senders:
        clauses.append(f"sender NOT IN ({','.join('?' * len(query.not_senders))})")
        params.extend(query.not_senders)
    order = "DESC" if backwards else "ASC"
    cursor.execute(
        "SELECT event_id, depth, stream_ordering FROM events WHERE "
        + " AND ".join(clauses)
        + f" ORDER BY depth {order}, stream_ordering {order} LIMIT ?",
        (*params, limit),
    )
    return list(cursor.fetchall())


def _state_groups_of(cursor: Cursor, event_ids: list[str]) -> dict[str, int]:
    result: dict[str, int] = {}
    for start in range(0, len(event_ids), _CHUNK):
        chunk = event_ids[start : start + _CHUNK]
        cursor.execute(
            "SELECT event_id, state_group FROM events"
            f" WHERE event_id IN ({','.join('?' * len(chunk))}) AND state_group IS NOT NULL",
            chunk,
        )
        result.update({event_id: int(group) for event_id, group in cursor.fetchall()})
    return result


def _state_at_events(
    cursor: Cursor, event_ids: list[str], keys: list[StateKey]
) -> tuple[dict[str, int], dict[int, StateMap]]:
    groups = _state_groups_of(cursor, event_ids)
    wanted = sorted(set(groups.values()))
    if not wanted or not keys:
        return groups, {group: {} for group in wanted}
    return groups, _filtered_state_for_groups(cursor, wanted, keys, [])


def _filtered_state_for_groups(
    cursor: Cursor, groups: list[int], keys: list[StateKey], types: list[str]
) -> dict[int, StateMap]:
    result: dict[int, StateMap] = {}
    for start in range(0, len(groups), _CHUNK):
        result.update(_filtered_state_chunk(cursor, groups[start : start + _CHUNK], keys, types))
    return result


def _filtered_state_chunk(
    cursor: Cursor, groups: list[int], keys: list[StateKey], types: list[str]
) -> dict[int, StateMap]:
    key_clauses = []
    key_params: list[Any] = []
    by_type: dict[str, list[str]] = defaultdict(list)
    for event_type, state_key in keys:
        by_type[event_type].append(state_key)
    for event_type, state_keys in by_type.items():
        key_clauses.append(f"(e.type = ? AND e.state_key IN ({','.join('?' * len(state_keys))}))")
        key_params.extend([event_type, *state_keys])
    if types:
        key_clauses.append(f"e.type IN ({','.join('?' * len(types))})")
        key_params.extend(types)
    return read_state_groups(cursor, groups, " OR ".join(key_clauses), key_params)


def _memberships(cursor: Cursor, user_id: str, room_ids: list[str]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(room_ids), _CHUNK):
        chunk = room_ids[start : start + _CHUNK]
        cursor.execute(
            "SELECT m.room_id, m.event_id, m.membership, e.depth, e.stream_ordering, m.forgotten"
            " FROM room_memberships m JOIN events e ON e.event_id = m.event_id"
            f" WHERE m.user_id = ? AND m.room_id IN ({','.join('?' * len(chunk))})",
            (user_id, *chunk),
        )
        rows.extend(cursor.fetchall())
    return rows


def _transaction_ids(
    cursor: Cursor, user_id: str, device_id: str, event_ids: list[str]
) -> dict[str, str]:
    result: dict[str, str] = {}
    for start in range(0, len(event_ids), _CHUNK):
        chunk = event_ids[start : start + _CHUNK]
        cursor.execute(
            "SELECT event_id, txn_id FROM event_txn_ids WHERE user_id = ? AND device_id = ?"
            f" AND event_id IN ({','.join('?' * len(chunk))})",
            (user_id, device_id, *chunk),
        )
        result.update({event_id: txn_id for event_id, txn_id in cursor.fetchall()})
    return result
