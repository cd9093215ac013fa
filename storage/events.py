"""Events and room state: persisting a batch of events in one transaction, and reading them.

The writer keeps three caches right after each commit: events by ID, each room's head
(forward extremities, depth, current state and its state group), and room versions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from homeserver.events.model import Event, StateKey
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.util.caches import LruCache
from storage.engine import Cursor, Database
from storage.relations import write_relations
from storage.state import MAX_CHAIN_LENGTH, StateMap, read_state_group, write_state_group
from storage.stream_ids import StreamIdGenerator

logger = logging.getLogger(__name__)

_EVENT_COLUMNS = (
    "e.event_id, e.json, r.room_version, e.rejected_reason, e.internal_metadata,"
    " e.stream_ordering, e.outlier"
)


@dataclass(frozen=True)
class RoomHead:
    """Where the next local event in a room attaches."""

    room_version: RoomVersion
    forward_extremities: tuple[str, ...]
    max_depth: int
    state: StateMap
    state_group: int | None
    state_chain_length: int


@dataclass(frozen=True)
class NewRoom:
    room_id: str
    room_version: RoomVersion
    creator: str
    created_ts: int
    is_public: bool = False


@dataclass(frozen=True)
class TxnRecord:
    """The client transaction an event answers, for idempotent retries."""

    user_id: str
    device_id: str
    txn_id: str
    request_hash: str
    # The request path without the ID: the spec scopes an ID to its device and path.
    scope: str = ""


@dataclass(frozen=True)
class StateAt:
    """The state before an event that does not simply extend the room head (an event
    received over federation, whose prev_events' states were resolved by the caller)."""

    state: StateMap
    # A stored group holding exactly ``state``, when there is one (a single prev event's).
    group: int | None = None
    # Otherwise ``state`` is stored as a delta against this group (and its state).
    base_group: int | None = None
    base_state: StateMap | None = None
    base_chain_length: int = 0


@dataclass
class PersistResult:
    events: list[Event]
    max_stream_ordering: int
    head: RoomHead
    state_changes: dict[StateKey, str | None] = field(default_factory=dict)


class EventStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.stream_ids = StreamIdGenerator(0)
        self._next_state_group = 1
        self._events: LruCache[str, Event] = LruCache(20_000)
        self._heads: LruCache[str, RoomHead] = LruCache(2_000)
        self._room_versions: LruCache[str, RoomVersion] = LruCache(50_000)
        self._group_states: LruCache[int, StateMap] = LruCache(500)
        # An event's state group never changes once it has one (an outlier gains one when
        # it joins the timeline), so these entries never go stale.
        self._event_groups: LruCache[str, int] = LruCache(10_000)
        # room ID -> stream ordering of the newest event this process wrote there; every
        # event above _changes_floor (the newest at start) was written by this process.
        self._room_latest: dict[str, int] = {}
        self._changes_floor: int | None = None
        # Backfilled events take stream orderings below every other event's, counting
        # down from here, so /sync (which reads forwards from its token) never sees
        # history arrive as if it were new.
        self._lowest_backfilled = 0

    async def load_positions(self) -> None:
        """Start the ID generators after the highest IDs in the database."""

        def read(cursor: Cursor) -> tuple[int, int]:
            cursor.execute("SELECT COALESCE(MAX(stream_ordering), 0) FROM events")
            stream = cursor.fetchone()
            cursor.execute("SELECT COALESCE(MAX(id), 0) FROM state_groups")
            group = cursor.fetchone()
            cursor.execute("SELECT COALESCE(MIN(stream_ordering), 0) FROM events")
            lowest = cursor.fetchone()
            self._lowest_backfilled = min(0, int(lowest[0] if lowest else 0))
            return int(stream[0] if stream else 0), int(group[0] if group else 0)

        stream, group = await self.db.run_interaction("load_stream_positions", read)
        self.stream_ids = StreamIdGenerator(max(0, stream))
        self._next_state_group = group + 1
        self._room_latest.clear()
        self._changes_floor = max(0, stream)

    # --- reading ----------------------------------------------------------------------

    async def get_room_version(self, room_id: str) -> RoomVersion | None:
        cached = self._room_versions.get(room_id)
        if cached is not None:
            return cached
        rows = await self.db.execute(
            "get_room_version", "SELECT room_version FROM rooms WHERE room_id = ?", room_id
        )
        if not rows:
            return None
        room_version = KNOWN_ROOM_VERSIONS.get(rows[0][0])
        if room_version is None:
            return None
        self._room_versions.set(room_id, room_version)
        return room_version

    async def get_event(self, event_id: str) -> Event | None:
        return (await self.get_events([event_id])).get(event_id)

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, Event]:
        """The events we hold among ``event_ids`` (rejected ones included)."""
        found: dict[str, Event] = {}
        missing = []
        for event_id in event_ids:
            event = self._events.get(event_id)
            if event is not None:
                found[event_id] = event
            else:
                missing.append(event_id)
        if missing:
            fetched = await self.db.run_interaction("get_events", _fetch_events, missing)
            for event in fetched:
                self._events.set(event.event_id, event)
                found[event.event_id] = event
        return found

    async def get_room_head(self, room_id: str) -> RoomHead | None:
        cached = self._heads.get(room_id)
        if cached is not None:
            return cached
        room_version = await self.get_room_version(room_id)
        if room_version is None:
            return None
        head = await self.db.run_interaction("get_room_head", _read_head, room_id, room_version)
        if head is not None:
            self._heads.set(room_id, head)
        return head

    async def get_current_state_ids(self, room_id: str) -> StateMap:
        head = await self.get_room_head(room_id)
        return dict(head.state) if head is not None else {}

    async def get_current_state_event(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> Event | None:
        head = await self.get_room_head(room_id)
        if head is None:
            return None
        event_id = head.state.get((event_type, state_key))
        return await self.get_event(event_id) if event_id is not None else None

    async def get_state_ids_after_event(self, event_id: str) -> StateMap | None:
        """The room state after ``event_id`` (for a non-state event, the state at it)."""
        rows = await self.db.execute(
            "get_event_state_group", "SELECT state_group FROM events WHERE event_id = ?", event_id
        )
        if not rows or rows[0][0] is None:
            return None
        return await self.get_state_group(int(rows[0][0]))

    async def get_state_ids_at_stream(self, room_id: str, stream: int) -> StateMap | None:
        """The room state as of room stream position ``stream`` (after every event up to
        it); None if the room had no events by then."""
        rows = await self.db.execute(
            "get_state_group_at_stream",
            "SELECT state_group FROM events WHERE room_id = ? AND stream_ordering <= ?"
            " AND state_group IS NOT NULL AND rejected_reason IS NULL"
            " ORDER BY stream_ordering DESC LIMIT 1",
            room_id,
            stream,
        )
        if not rows:
            return None
        return await self.get_state_group(int(rows[0][0]))

    async def get_state_ids_before_event(self, event: Event) -> StateMap | None:
        after = await self.get_state_ids_after_event(event.event_id)
        if after is None or not event.is_state() or event.rejected_reason is not None:
            return after
        replaces = event.unsigned.get("replaces_state")
        before = dict(after)
        if isinstance(replaces, str):
            before[event.state_pair] = replaces
        else:
            before.pop(event.state_pair, None)
        return before

    async def get_state_group(self, group_id: int) -> StateMap:
        cached = self._group_states.get(group_id)
        if cached is None:
            state, _ = await self.db.run_interaction("read_state_group", read_state_group, group_id)
            self._group_states.set(group_id, state)
            return dict(state)
        return dict(cached)

    def rooms_changed_since(self, room_ids: Iterable[str], after: int) -> set[str] | None:
        """Which of ``room_ids`` may have events after stream position ``after`` (a room
        whose newest event is later is included even if none is in a given range), or
        None if this process cannot tell (``after`` is from before it started)."""
        floor = self._changes_floor
        if floor is None or after < floor:
            return None
        return {r for r in room_ids if self._room_latest.get(r, floor) > after}

    def cached_event(self, event_id: str) -> Event | None:
        return self._events.get(event_id)

    def cached_state_group(self, event_id: str) -> int | None:
        """The state group of ``event_id`` if this process knows it without a query."""
        return self._event_groups.get(event_id)

    def remember_state_groups(self, groups: Mapping[str, int]) -> None:
        for event_id, group in groups.items():
            self._event_groups.set(event_id, group)

    def cached_group_state(self, group_id: int, room_id: str) -> StateMap | None:
        """The whole state of group ``group_id`` (of room ``room_id``) if this process holds
        it: a recently read or written group, or the room's current one. Not a copy: the
        caller must not change it."""
        state = self._group_states.get(group_id)
        if state is not None:
            return state
        head = self._heads.get(room_id)
        if head is not None and head.state_group == group_id:
            return head.state
        return None

    async def get_redacting_events(self, event_ids: Sequence[str]) -> dict[str, str]:
        """For each of ``event_ids`` that was redacted, the ID of a redaction of it."""
        if not event_ids:
            return {}
        placeholders = ",".join("?" * len(event_ids))
        rows = await self.db.execute(
            "get_redacting_events",
            f"SELECT redacts, event_id FROM redactions WHERE redacts IN ({placeholders})",
            *event_ids,
        )
        return {redacts: event_id for redacts, event_id in rows}

    async def get_txn_event(
        self, user_id: str, device_id: str, txn_id: str, scope: str = ""
    ) -> tuple[str, str] | None:
        """The (event ID, request hash) an earlier request with this transaction ID created."""
        rows = await self.db.execute(
            "get_txn_event",
            "SELECT event_id, request_hash FROM event_txn_ids"
            " WHERE user_id = ? AND device_id = ? AND scope = ? AND txn_id = ?",
            user_id,
            device_id,
            scope,
            txn_id,
        )
        return (rows[0][0], rows[0][1]) if rows else None

    async def get_rooms_for_user(
        self, user_id: str, memberships: Sequence[str] = ("join",)
    ) -> list[str]:
        placeholders = ",".join("?" * len(memberships))
        rows = await self.db.execute(
            "get_rooms_for_user",
            "SELECT room_id FROM current_state_events"
            f" WHERE type = 'm.room.member' AND state_key = ? AND membership IN ({placeholders})",
            user_id,
            *memberships,
        )
        return [row[0] for row in rows]

    # --- writing ----------------------------------------------------------------------

    def next_state_group(self) -> int:
        group = self._next_state_group
        self._next_state_group += 1
        return group

    async def persist_local_events(
        self,
        room_id: str,
        events: Sequence[Event],
        *,
        head: RoomHead | None,
        new_room: NewRoom | None = None,
        txn: TxnRecord | None = None,
        now_ms: int,
    ) -> PersistResult:
        """Persist events that extend ``head`` in order, each pointing at the one before.

        The caller holds the room's lock, so ``head`` is the room's head. Everything (the
        room, the events, their edges, state groups, current state, memberships,
        redactions, the transaction ID) is written in one transaction or not at all.
        """
        return await self.persist_events(
            room_id, events, head=head, new_room=new_room, txn=txn, now_ms=now_ms
        )

    async def persist_events(
        self,
        room_id: str,
        events: Sequence[Event],
        *,
        head: RoomHead | None,
        now_ms: int,
        state_at: Mapping[str, StateAt] | None = None,
        current_state: StateMap | None = None,
        new_room: NewRoom | None = None,
        txn: TxnRecord | None = None,
        replace_extremities: bool = False,
        backfilled: bool = False,
    ) -> PersistResult:
        """Persist a batch of a room's events in one transaction.

        An event's state before it is ``state_at[event_id]`` when given, else the state
        after the batch's previous event (or the head's). Events marked
        ``internal_metadata["outlier"]`` are stored without state or timeline place (auth
        chains, state fetched from another server); ``"soft_failed"`` ones are stored in
        the DAG but change neither the forward extremities nor the current state.
        ``current_state`` is the room's state after the batch when the caller resolved it
        (several forward extremities); by default the state after the last event.
        ``replace_extremities``: the batch's events become the room's only forward
        extremities (a join over federation into a room this server had left: what it
        last saw of the room is history, not something to build on).
        ``backfilled``: history from before what the room's timeline holds (each event
        with its ``state_at``); the events get negative stream orderings and change
        neither the forward extremities nor the current state, and events held as
        outliers become timeline events in place.
        """
        if backfilled:
            stream_ids = list(range(self._lowest_backfilled - len(events), self._lowest_backfilled))
            self._lowest_backfilled -= len(events)
        else:
            stream_ids = self.stream_ids.allocate(len(events))
        try:
            plan = _plan_state(self, events, head, state_at or {})
            if backfilled and head is not None:
                plan.final_state = dict(head.state)
                plan.final_group = head.state_group
                plan.final_chain_length = head.state_chain_length
            elif current_state is not None and dict(current_state) != plan.final_state:
                # A resolved state matches no stored group: the next local event must
                # store its state as a snapshot, not as a delta against a wrong base.
                plan.final_state = dict(current_state)
                plan.final_group = None
                plan.final_chain_length = 0
            result: PersistResult = await self.db.run_interaction(
                "persist_events",
                _persist,
                room_id,
                list(zip(events, stream_ids, strict=True)),
                plan,
                head,
                new_room,
                txn,
                now_ms,
                replace_extremities,
                backfilled,
            )
        finally:
            if not backfilled:
                self.stream_ids.finished(stream_ids)
        if not backfilled and stream_ids:
            latest = self._room_latest.get(room_id, 0)
            self._room_latest[room_id] = max(latest, *stream_ids)
        for event, stream_ordering, group in zip(events, stream_ids, plan.groups, strict=True):
            event.internal_metadata["stream_ordering"] = stream_ordering
            self._events.set(event.event_id, event)
            if group is not None:
                self._event_groups.set(event.event_id, group)
        self._heads.set(room_id, result.head)
        if new_room is not None:
            self._room_versions.set(room_id, new_room.room_version)
        for group_id, state in plan.group_states.items():
            self._group_states.set(group_id, state)
        return result


@dataclass
class _StatePlan:
    """The state group each event ends in, worked out before the transaction."""

    groups: list[int | None]
    new_groups: Sequence[tuple[int, int | None, int, StateMap, StateMap | None]]
    group_states: dict[int, StateMap]
    final_state: StateMap
    final_group: int | None
    final_chain_length: int


def _plan_state(
    store: EventStore,
    events: Sequence[Event],
    head: RoomHead | None,
    state_at: Mapping[str, StateAt],
) -> _StatePlan:
    state: StateMap = dict(head.state) if head is not None else {}
    group = head.state_group if head is not None else None
    chain_length = head.state_chain_length if head is not None else 0
    groups: list[int | None] = []
    new_groups: list[tuple[int, int | None, int, StateMap, StateMap | None]] = []
    group_states: dict[int, StateMap] = {}

    def add_group(
        new_state: StateMap, prev_group: int | None, prev_length: int, prev_state: StateMap | None
    ) -> tuple[int, int]:
        new_group = store.next_state_group()
        new_groups.append((new_group, prev_group, prev_length, new_state, prev_state))
        group_states[new_group] = new_state
        # As write_state_group decides: extend the delta chain or start a snapshot.
        if prev_group is not None and prev_state is not None and prev_length < MAX_CHAIN_LENGTH:
            return new_group, prev_length + 1
        return new_group, 0

    # After a fork the head's state was resolved and has no stored group yet.
    needs_snapshot = head is not None and group is None and bool(state)
    for event in events:
        if event.internal_metadata.get("outlier"):
            groups.append(None)
            continue
        explicit = state_at.get(event.event_id)
        if explicit is None and needs_snapshot:
            group, chain_length = add_group(state, None, 0, None)
        needs_snapshot = False
        if explicit is not None:
            state = dict(explicit.state)
            if explicit.group is not None:
                group, chain_length = explicit.group, explicit.base_chain_length
            else:
                group, chain_length = add_group(
                    state, explicit.base_group, explicit.base_chain_length, explicit.base_state
                )
        if event.is_state() and event.rejected_reason is None:
            previous_state = state
            state = dict(state)
            replaced = state.get(event.state_pair)
            if replaced is not None:
                event.pdu.setdefault("unsigned", {})["replaces_state"] = replaced
            state[event.state_pair] = event.event_id
            group, chain_length = add_group(state, group, chain_length, previous_state)
        groups.append(group)
    return _StatePlan(groups, new_groups, group_states, state, group, chain_length)


def _persist(
    cursor: Cursor,
    room_id: str,
    events: list[tuple[Event, int]],
    plan: _StatePlan,
    head: RoomHead | None,
    new_room: NewRoom | None,
    txn: TxnRecord | None,
    now_ms: int,
    replace_extremities: bool = False,
    backfilled: bool = False,
) -> PersistResult:
    if new_room is not None:
        cursor.execute(
            "INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                new_room.room_id,
                new_room.room_version.identifier,
                new_room.creator,
                new_room.is_public,
                new_room.created_ts,
            ),
        )
    for group_id, prev_group, prev_length, state, prev_state in plan.new_groups:
        write_state_group(cursor, group_id, room_id, prev_group, prev_length, state, prev_state)
    event_rows = []
    edge_rows: list[tuple[str, str]] = []
    auth_rows: list[tuple[str, str]] = []
    membership_rows = []
    redaction_rows = []
    # Backfill reaches events held as outliers (a joined room's state and auth chain):
    # they take their place in the timeline; their edges and memberships are stored.
    ex_outliers: set[str] = set()
    if backfilled:
        batch = [event.event_id for event, _ in events]
        placeholders = ",".join("?" * len(batch))
        cursor.execute(
            f"SELECT event_id FROM events WHERE outlier = ? AND event_id IN ({placeholders})",
            (True, *batch),
        )
        ex_outliers = {row[0] for row in cursor.fetchall()}
    outlier_updates = []
    for (event, stream_ordering), group in zip(events, plan.groups, strict=True):
        pdu = {k: v for k, v in event.pdu.items() if k != "unsigned"}
        metadata = {k: v for k, v in event.internal_metadata.items() if k != "stream_ordering"}
        if event.unsigned.get("replaces_state"):
            metadata["replaces_state"] = event.unsigned["replaces_state"]
        if event.event_id in ex_outliers:
            outlier_updates.append(
                (
                    stream_ordering,
                    group,
                    event.rejected_reason,
                    json.dumps(metadata, separators=(",", ":")),
                    False,
                    event.event_id,
                )
            )
            continue
        event_rows.append(
            (
                stream_ordering,
                event.event_id,
                room_id,
                event.type,
                event.state_key,
                event.sender,
                event.depth,
                event.origin_server_ts,
                now_ms,
                event.rejected_reason,
                json.dumps(pdu, ensure_ascii=False, separators=(",", ":")),
                json.dumps(metadata, separators=(",", ":")),
                group,
                bool(event.internal_metadata.get("outlier")),
            )
        )
        edge_rows.extend((event.event_id, prev) for prev in event.prev_event_ids)
        auth_rows.extend((event.event_id, auth) for auth in event.auth_event_ids)
        if event.rejected_reason is not None:
            continue
        membership = event.membership
        if membership is not None and event.state_key is not None:
            membership_rows.append(
                (
                    event.event_id,
                    room_id,
                    event.state_key,
                    event.sender,
                    membership,
                    stream_ordering,
                )
            )
        redacts = event.redacts
        if redacts is not None:
            redaction_rows.append((event.event_id, redacts, now_ms))
    cursor.execute_batch(
        "INSERT INTO events (stream_ordering, event_id, room_id, type, state_key, sender,"
        " depth, origin_server_ts, received_ts, rejected_reason, json, internal_metadata,"
        " state_group, outlier) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        event_rows,
    )
    cursor.execute_batch(
        "INSERT INTO event_edges (event_id, prev_event_id) VALUES (?, ?)", edge_rows
    )
    cursor.execute_batch("INSERT INTO event_auth (event_id, auth_id) VALUES (?, ?)", auth_rows)
    cursor.execute_batch(
        "INSERT INTO room_memberships (event_id, room_id, user_id, sender, membership,"
        " stream_ordering) VALUES (?, ?, ?, ?, ?, ?)",
        membership_rows,
    )
    cursor.execute_batch(
        "INSERT INTO redactions (event_id, redacts, received_ts) VALUES (?, ?, ?)", redaction_rows
    )
    cursor.execute_batch(
        "UPDATE events SET stream_ordering = ?, state_group = ?, rejected_reason = ?,"
        " internal_metadata = ?, outlier = ? WHERE event_id = ?",
        outlier_updates,
    )
    cursor.execute_batch(
        "UPDATE room_memberships SET stream_ordering = ? WHERE event_id = ?",
        [(row[0], row[-1]) for row in outlier_updates],
    )
    # Relations and threads (storage/relations.py): the batch's m.relates_to rows, and the
    # relationships its redactions break.
    write_relations(
        cursor,
        room_id,
        [
            (e, so)
            for e, so in events
            if e.rejected_reason is None and e.event_id not in ex_outliers
        ],
    )

    # The new events replace whatever they point at as the room's forward extremities.
    # Outliers are not in the room's timeline and soft-failed events must not be built
    # on, so neither becomes an extremity; an event something already points at (it
    # arrived late) is not one either.
    in_dag = [
        event
        for event, _ in events
        if not backfilled
        and not event.internal_metadata.get("outlier")
        and not event.internal_metadata.get("soft_failed")
        and event.rejected_reason is None
    ]
    referenced = {prev for event in in_dag for prev in event.prev_event_ids}
    batch_ids = [event.event_id for event in in_dag]
    if batch_ids:
        placeholders = ",".join("?" * len(batch_ids))
        cursor.execute(
            "SELECT DISTINCT prev_event_id FROM event_edges"
            f" WHERE prev_event_id IN ({placeholders})",
            batch_ids,
        )
        referenced.update(row[0] for row in cursor.fetchall())
    cursor.execute_batch(
        "DELETE FROM event_forward_extremities WHERE room_id = ? AND event_id = ?",
        [(room_id, prev) for prev in referenced],
    )
    if replace_extremities:
        cursor.execute("DELETE FROM event_forward_extremities WHERE room_id = ?", (room_id,))
        referenced.update(head.forward_extremities if head is not None else ())
    new_extremities = [eid for eid in batch_ids if eid not in referenced]
    cursor.execute_batch(
        "INSERT INTO event_forward_extremities (room_id, event_id) VALUES (?, ?)",
        [(room_id, eid) for eid in new_extremities],
    )
    old_extremities = (
        [] if head is None else [e for e in head.forward_extremities if e not in referenced]
    )

    # Current state: write only what changed.
    old_state = head.state if head is not None else {}
    changes: dict[StateKey, str | None] = {
        key: event_id
        for key, event_id in plan.final_state.items()
        if old_state.get(key) != event_id
    }
    changes.update({key: None for key in old_state.keys() - plan.final_state.keys()})
    by_id = {event.event_id: event for event, _ in events}
    memberships = {e.event_id: e.membership for e in by_id.values()}
    elsewhere = [
        eid for (t, _), eid in changes.items() if t == "m.room.member" and eid and eid not in by_id
    ]
    if elsewhere:
        placeholders = ",".join("?" * len(elsewhere))
        cursor.execute(
            f"SELECT event_id, membership FROM room_memberships WHERE event_id IN ({placeholders})",
            elsewhere,
        )
        memberships.update(dict(cursor.fetchall()))
    upserts = []
    for (event_type, state_key), event_id in changes.items():
        if event_id is None:
            cursor.execute(
                "DELETE FROM current_state_events WHERE room_id = ? AND type = ? AND state_key = ?",
                (room_id, event_type, state_key),
            )
            continue
        membership = memberships.get(event_id) if event_type == "m.room.member" else None
        upserts.append((room_id, event_type, state_key, event_id, membership))
    cursor.execute_batch(
        "INSERT INTO current_state_events (room_id, type, state_key, event_id, membership)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id, type, state_key) DO UPDATE SET"
        " event_id = excluded.event_id, membership = excluded.membership",
        upserts,
    )
    if txn is not None:
        cursor.execute(
            "INSERT INTO event_txn_ids (user_id, device_id, scope, txn_id, room_id, event_id,"
            " request_hash, inserted_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                txn.user_id,
                txn.device_id,
                txn.scope,
                txn.txn_id,
                room_id,
                events[-1][0].event_id,
                txn.request_hash,
                now_ms,
            ),
        )

    room_version = new_room.room_version if new_room is not None else None
    if room_version is None:
        assert head is not None
        room_version = head.room_version
    new_head = RoomHead(
        room_version=room_version,
        forward_extremities=tuple(old_extremities + new_extremities),
        max_depth=max([head.max_depth if head else 0, *(e.depth for e, _ in events)]),
        state=plan.final_state,
        state_group=plan.final_group,
        state_chain_length=plan.final_chain_length,
    )
    return PersistResult(
        events=[event for event, _ in events],
        max_stream_ordering=events[-1][1],
        head=new_head,
        state_changes=changes,
    )


def _fetch_events(cursor: Cursor, event_ids: list[str]) -> list[Event]:
    events: list[Event] = []
    for start in range(0, len(event_ids), 500):
        chunk = event_ids[start : start + 500]
        placeholders = ",".join("?" * len(chunk))
        cursor.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events e JOIN rooms r ON r.room_id = e.room_id"
            f" WHERE e.event_id IN ({placeholders})",
            chunk,
        )
        events.extend(_row_to_event(row) for row in cursor.fetchall())
    return events


def _row_to_event(row: tuple[Any, ...]) -> Event:
    event_id, pdu_json, room_version_id, rejected_reason, metadata_json, stream, outlier = row
    pdu = json.loads(pdu_json)
    metadata = json.loads(metadata_json) if metadata_json else {}
    replaces = metadata.pop("replaces_state", None)
    if replaces is not None:
        pdu["unsigned"] = {"replaces_state": replaces}
    event = Event(pdu, KNOWN_ROOM_VERSIONS[room_version_id], event_id)
    event.internal_metadata.update(metadata)
    event.internal_metadata["stream_ordering"] = int(stream)
    if outlier:
        event.internal_metadata["outlier"] = True
    event.rejected_reason = rejected_reason
    return event


def _read_head(cursor: Cursor, room_id: str, room_version: RoomVersion) -> RoomHead | None:
    cursor.execute(
        "SELECT f.event_id, e.depth, e.state_group, e.stream_ordering"
        " FROM event_forward_extremities f JOIN events e ON e.event_id = f.event_id"
        " WHERE f.room_id = ? ORDER BY e.stream_ordering",
        (room_id,),
    )
    rows = cursor.fetchall()
    if not rows:
        return None
    cursor.execute("SELECT COALESCE(MAX(depth), 0) FROM events WHERE room_id = ?", (room_id,))
    depth_row = cursor.fetchone()
    # With one extremity the current state is the state after it, so its group can be
    # the base of the next state delta; with several (a fork) the current state was
    # resolved and matches no stored group.
    state_group = rows[-1][2] if len(rows) == 1 else None
    cursor.execute(
        "SELECT type, state_key, event_id FROM current_state_events WHERE room_id = ?",
        (room_id,),
    )
    state = {(t, k): e for t, k, e in cursor.fetchall()}
    chain_length = 0
    if state_group is not None:
        cursor.execute("SELECT chain_length FROM state_groups WHERE id = ?", (state_group,))
        length_row = cursor.fetchone()
        chain_length = int(length_row[0]) if length_row else 0
    return RoomHead(
        room_version=room_version,
        forward_extremities=tuple(row[0] for row in rows),
        max_depth=int(depth_row[0]) if depth_row else 0,
        state=state,
        state_group=int(state_group) if state_group is not None else None,
        state_chain_length=chain_length,
    )
