"""Event relationships and threads: the ``event_relations`` and ``threads`` tables (0010).

``write_relations`` runs inside the event persister's transaction, so an event and its
relationship are stored together or not at all. ``RelationsStore`` reads them: pages of
an event's children (optionally recursing), thread summaries, edits and references for
bundled aggregations, and a room's threads by latest activity. Every read takes a batch
of parents and costs one query whatever the batch's size (up to ``_CHUNK`` parents per
statement).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.events.model import Event
from homeserver.events.relations import ANNOTATION, THREAD, relation_from_content
from storage.engine import Cursor, Database

Position = tuple[int, int]

# Parents per IN (...) list: well under SQLite's bound-parameter limit.
_CHUNK = 500

# How many relationships deep a recursive /relations walks (the spec: at least 3).
RECURSION_DEPTH = 3


@dataclass(frozen=True, slots=True)
class RelatedEvent:
    """A child event as ``event_relations`` records it."""

    event_id: str
    parent_id: str
    rel_type: str
    room_id: str
    sender: str
    type: str
    depth: int
    stream_ordering: int
    origin_server_ts: int

    @property
    def position(self) -> Position:
        return (self.depth, self.stream_ordering)


_RELATED_COLUMNS = (
    "event_id, relates_to_id, relation_type, room_id, sender, type, depth, stream_ordering,"
    " origin_server_ts"
)


def _related(row: tuple[Any, ...]) -> RelatedEvent:
    return RelatedEvent(
        event_id=row[0],
        parent_id=row[1],
        rel_type=row[2],
        room_id=row[3],
        sender=row[4],
        type=row[5],
        depth=int(row[6]),
        stream_ordering=int(row[7]),
        origin_server_ts=int(row[8]),
    )


@dataclass(frozen=True, slots=True)
class ThreadRoot:
    thread_id: str
    latest_event_id: str
    position: Position


def write_relations(cursor: Cursor, room_id: str, events: Sequence[tuple[Event, int]]) -> None:
    """Record the relationships of ``events`` (non-rejected, with their stream orderings),
    persisted in ``room_id`` in this transaction; and break those of the events their
    redactions redact."""
    rows = []
    for event, stream_ordering in events:
        relation = relation_from_content(event.content)
        if relation is None:
            continue
        rows.append(
            (
                event.event_id,
                relation.parent_id,
                relation.rel_type,
                relation.key,
                room_id,
                event.sender,
                event.type,
                event.depth,
                stream_ordering,
                event.origin_server_ts,
            )
        )
    redacted = [event.redacts for event, _ in events if event.redacts is not None]
    if rows:
        # A redaction can arrive before the event it redacts (over federation): such an
        # event's relationship is broken from the start.
        already = _redacted_among(cursor, room_id, [row[0] for row in rows])
        rows = [row for row in rows if row[0] not in already]
    cursor.execute_batch(
        f"INSERT INTO event_relations (event_id, relates_to_id, relation_type,"
        f" aggregation_key, room_id, sender, type, depth, stream_ordering, origin_server_ts)"
        f" VALUES ({', '.join('?' * 10)})",
        rows,
    )
    # The thread's latest reply moves forward only (a backfilled reply is older).
    cursor.execute_batch(
        "INSERT INTO threads (room_id, thread_id, latest_event_id, depth, stream_ordering)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id, thread_id) DO UPDATE SET"
        " latest_event_id = excluded.latest_event_id, depth = excluded.depth,"
        " stream_ordering = excluded.stream_ordering"
        " WHERE threads.depth < excluded.depth OR (threads.depth = excluded.depth"
        " AND threads.stream_ordering < excluded.stream_ordering)",
        [(room_id, row[1], row[0], row[7], row[8]) for row in rows if row[2] == THREAD],
    )
    if redacted:
        _break_relations(cursor, room_id, redacted)


def _redacted_among(cursor: Cursor, room_id: str, event_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(event_ids), _CHUNK):
        chunk = event_ids[start : start + _CHUNK]
        cursor.execute(
            "SELECT r.redacts FROM redactions r JOIN events e ON e.event_id = r.event_id"
            f" WHERE e.room_id = ? AND r.redacts IN ({','.join('?' * len(chunk))})",
            [room_id, *chunk],
        )
        found.update(row[0] for row in cursor.fetchall())
    return found


def _break_relations(cursor: Cursor, room_id: str, redacted: list[str]) -> None:
    cursor.execute_batch(
        "DELETE FROM event_relations WHERE event_id = ? AND room_id = ?",
        [(event_id, room_id) for event_id in redacted],
    )
    # A thread whose latest reply was redacted falls back to its previous reply, or
    # stops being a thread. Only happens per redaction of a latest reply: rare.
    placeholders = ",".join("?" * len(redacted))
    cursor.execute(
        f"SELECT thread_id FROM threads WHERE room_id = ? AND latest_event_id IN ({placeholders})",
        [room_id, *redacted],
    )
    for (thread_id,) in cursor.fetchall():
        cursor.execute(
            "SELECT event_id, depth, stream_ordering FROM event_relations"
            " WHERE relates_to_id = ? AND relation_type = ? AND room_id = ?"
            " ORDER BY depth DESC, stream_ordering DESC LIMIT 1",
            (thread_id, THREAD, room_id),
        )
        latest = cursor.fetchone()
        if latest is None:
            cursor.execute(
                "DELETE FROM threads WHERE room_id = ? AND thread_id = ?", (room_id, thread_id)
            )
        else:
            cursor.execute(
                "UPDATE threads SET latest_event_id = ?, depth = ?, stream_ordering = ?"
                " WHERE room_id = ? AND thread_id = ?",
                (latest[0], latest[1], latest[2], room_id, thread_id),
            )


def _bounds(
    clauses: list[str],
    params: list[Any],
    from_position: Position | None,
    to_position: Position | None,
    backwards: bool,
) -> None:
    """Positions are "just after the event at (depth, stream)", as topological tokens:
    backwards from p is at or before p, forwards from p strictly after it."""
    if from_position is not None:
        if backwards:
            clauses.append("(depth < ? OR (depth = ? AND stream_ordering <= ?))")
        else:
            clauses.append("(depth > ? OR (depth = ? AND stream_ordering > ?))")
        params.extend([from_position[0], from_position[0], from_position[1]])
    if to_position is not None:
        if backwards:
            clauses.append("(depth > ? OR (depth = ? AND stream_ordering > ?))")
        else:
            clauses.append("(depth < ? OR (depth = ? AND stream_ordering <= ?))")
        params.extend([to_position[0], to_position[0], to_position[1]])


class RelationsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_children(
        self,
        parent_id: str,
        room_id: str,
        *,
        rel_type: str | None,
        event_type: str | None,
        from_position: Position | None,
        to_position: Position | None,
        backwards: bool,
        limit: int,
        recurse: bool,
        exclude_rel_types: Collection[str] = (),
    ) -> tuple[list[RelatedEvent], bool]:
        """Up to ``limit`` children of ``parent_id`` in ``room_id`` in DAG order (newest
        first when ``backwards``), and whether there are more. With ``recurse``, children
        of children too, up to ``RECURSION_DEPTH`` relationships away; the filters apply
        to every event returned."""
        clauses = ["room_id = ?"]
        params: list[Any] = [room_id]
        if rel_type is not None:
            clauses.append("relation_type = ?")
            params.append(rel_type)
        if event_type is not None:
            clauses.append("type = ?")
            params.append(event_type)
        if exclude_rel_types:
            clauses.append(f"relation_type NOT IN ({','.join('?' * len(exclude_rel_types))})")
            params.extend(exclude_rel_types)
        _bounds(clauses, params, from_position, to_position, backwards)
        order = "DESC" if backwards else "ASC"
        where = " AND ".join(clauses)
        if recurse:
            # DISTINCT and the hop limit keep a cycle (possible with the free-form event
            # IDs of room versions 1 and 2) from repeating or looping; the parent itself
            # is never its own child.
            sql = (
                f"WITH RECURSIVE related (hops, {_RELATED_COLUMNS}) AS ("
                f" SELECT 1, {_RELATED_COLUMNS} FROM event_relations WHERE relates_to_id = ?"
                " UNION ALL"
                " SELECT r.hops + 1, e.event_id, e.relates_to_id, e.relation_type, e.room_id,"
                " e.sender, e.type, e.depth, e.stream_ordering, e.origin_server_ts"
                " FROM related r JOIN event_relations e ON e.relates_to_id = r.event_id"
                " WHERE r.hops < ?)"
                f" SELECT DISTINCT {_RELATED_COLUMNS} FROM related"
                f" WHERE event_id <> ? AND {where}"
                f" ORDER BY depth {order}, stream_ordering {order} LIMIT ?"
            )
            args = [parent_id, RECURSION_DEPTH, parent_id, *params, limit + 1]
        else:
            sql = (
                f"SELECT {_RELATED_COLUMNS} FROM event_relations"
                f" WHERE relates_to_id = ? AND {where}"
                f" ORDER BY depth {order}, stream_ordering {order} LIMIT ?"
            )
            args = [parent_id, *params, limit + 1]
        rows = await self.db.execute("get_relation_children", sql, *args)
        children = [_related(row) for row in rows]
        return children[:limit], len(children) > limit

    async def get_children_of(
        self, parent_ids: Collection[str], rel_types: Collection[str]
    ) -> list[RelatedEvent]:
        """Every child of ``parent_ids`` by one of ``rel_types``, oldest first."""
        if not parent_ids or not rel_types:
            return []
        return await self.db.run_interaction(
            "get_relation_children_of", _children_of, sorted(parent_ids), sorted(rel_types)
        )

    async def get_thread_participants(
        self, thread_ids: Collection[str]
    ) -> list[tuple[str, str, str, int]]:
        """(thread root, room, sender, number of replies) for each sender of replies to
        each of ``thread_ids``."""
        if not thread_ids:
            return []
        return await self.db.run_interaction(
            "get_thread_participants", _thread_participants, sorted(thread_ids)
        )

    async def get_thread_latest(self, thread_ids: Collection[str]) -> dict[tuple[str, str], str]:
        """The latest reply of each of ``thread_ids`` that is a thread, by (room, root)."""
        if not thread_ids:
            return {}
        return await self.db.run_interaction(
            "get_thread_latest", _thread_latest, sorted(thread_ids)
        )

    async def get_latest_reply_excluding(
        self, room_id: str, thread_id: str, senders: Collection[str]
    ) -> str | None:
        """The latest reply to a thread not sent by any of ``senders``."""
        placeholders = ",".join("?" * len(senders))
        rows = await self.db.execute(
            "get_latest_thread_reply_excluding",
            "SELECT event_id FROM event_relations"
            " WHERE relates_to_id = ? AND relation_type = ? AND room_id = ?"
            f" AND sender NOT IN ({placeholders})"
            " ORDER BY depth DESC, stream_ordering DESC LIMIT 1",
            thread_id,
            THREAD,
            room_id,
            *sorted(senders),
        )
        return str(rows[0][0]) if rows else None

    async def is_relation_target(self, event_id: str) -> bool:
        """Whether some event relates to ``event_id``."""
        rows = await self.db.execute(
            "is_relation_target",
            "SELECT 1 FROM event_relations WHERE relates_to_id = ? LIMIT 1",
            event_id,
        )
        return bool(rows)

    async def has_annotated(self, parent_id: str, event_type: str, key: str, sender: str) -> bool:
        """Whether ``sender`` already annotated ``parent_id`` with this type and key."""
        rows = await self.db.execute(
            "has_annotated",
            "SELECT 1 FROM event_relations WHERE relates_to_id = ? AND relation_type = ?"
            " AND type = ? AND sender = ? AND aggregation_key = ? LIMIT 1",
            parent_id,
            ANNOTATION,
            event_type,
            sender,
            key,
        )
        return bool(rows)

    async def get_threads(
        self,
        room_id: str,
        *,
        before: Position | None,
        limit: int,
        participant: str | None = None,
    ) -> tuple[list[ThreadRoot], bool]:
        """Up to ``limit`` threads of ``room_id`` whose latest reply is strictly before
        ``before``, most recently active first, and whether there are more. With
        ``participant``, only threads that user started or replied to."""
        clauses = ["t.room_id = ?"]
        params: list[Any] = [room_id]
        if before is not None:
            clauses.append("(t.depth < ? OR (t.depth = ? AND t.stream_ordering < ?))")
            params.extend([before[0], before[0], before[1]])
        if participant is not None:
            clauses.append(
                "(EXISTS (SELECT 1 FROM events e WHERE e.event_id = t.thread_id"
                " AND e.sender = ?) OR EXISTS (SELECT 1 FROM event_relations r"
                " WHERE r.relates_to_id = t.thread_id AND r.relation_type = ?"
                " AND r.room_id = t.room_id AND r.sender = ?))"
            )
            params.extend([participant, THREAD, participant])
        rows = await self.db.execute(
            "get_threads",
            "SELECT t.thread_id, t.latest_event_id, t.depth, t.stream_ordering FROM threads t"
            f" WHERE {' AND '.join(clauses)}"
            " ORDER BY t.depth DESC, t.stream_ordering DESC LIMIT ?",
            *params,
            limit + 1,
        )
        roots = [ThreadRoot(row[0], row[1], (int(row[2]), int(row[3]))) for row in rows]
        return roots[:limit], len(roots) > limit


def _in_chunks(ids: list[str]) -> list[list[str]]:
    return [ids[start : start + _CHUNK] for start in range(0, len(ids), _CHUNK)]


def _children_of(cursor: Cursor, parent_ids: list[str], rel_types: list[str]) -> list[RelatedEvent]:
    found: list[RelatedEvent] = []
    types = ",".join("?" * len(rel_types))
    for chunk in _in_chunks(parent_ids):
        cursor.execute(
            f"SELECT {_RELATED_COLUMNS} FROM event_relations"
            f" WHERE relates_to_id IN ({','.join('?' * len(chunk))})"
            f" AND relation_type IN ({types})",
            [*chunk, *rel_types],
        )
        found.extend(_related(row) for row in cursor.fetchall())
    found.sort(key=lambda child: child.position)
    return found


def _thread_participants(cursor: Cursor, thread_ids: list[str]) -> list[tuple[str, str, str, int]]:
    found: list[tuple[str, str, str, int]] = []
    for chunk in _in_chunks(thread_ids):
        cursor.execute(
            "SELECT relates_to_id, room_id, sender, COUNT(*) FROM event_relations"
            f" WHERE relates_to_id IN ({','.join('?' * len(chunk))}) AND relation_type = ?"
            " GROUP BY relates_to_id, room_id, sender",
            [*chunk, THREAD],
        )
        found.extend((row[0], row[1], row[2], int(row[3])) for row in cursor.fetchall())
    return found


def _thread_latest(cursor: Cursor, thread_ids: list[str]) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for chunk in _in_chunks(thread_ids):
        cursor.execute(
            "SELECT room_id, thread_id, latest_event_id FROM threads"
            f" WHERE thread_id IN ({','.join('?' * len(chunk))})",
            chunk,
        )
        found.update({(row[0], row[1]): row[2] for row in cursor.fetchall()})
    return found
