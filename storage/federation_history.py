"""Walking a room's event graph for other servers (and for our own backfill).

Each walk is one recursive query over ``event_edges`` or ``event_auth``, bounded by the
number of hops, so serving ``/backfill`` or ``/get_missing_events`` costs one round trip
to the database whatever the limit.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from storage.engine import Cursor, Database


class FederationHistoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_backfill_event_ids(
        self, room_id: str, event_ids: Sequence[str], limit: int
    ) -> list[str]:
        """``event_ids`` and the events before them, newest (greatest depth) first, at
        most ``limit``: what ``/backfill`` serves. Outliers and rejected events are
        neither walked through nor returned."""
        if not event_ids or limit <= 0:
            return []
        return await self.db.run_interaction(
            "get_backfill_event_ids", _backfill, room_id, list(event_ids), limit
        )

    async def get_missing_event_ids(
        self,
        room_id: str,
        earliest_events: Collection[str],
        latest_events: Collection[str],
        limit: int,
        min_depth: int,
    ) -> list[str]:
        """The ancestors of ``latest_events`` closest to them, not walking past
        ``earliest_events`` nor below ``min_depth``, at most ``limit``, oldest first:
        what ``/get_missing_events`` serves."""
        latest = [e for e in latest_events if e not in set(earliest_events)]
        if not latest or limit <= 0:
            return []
        return await self.db.run_interaction(
            "get_missing_event_ids",
            _missing,
            room_id,
            sorted(set(earliest_events)),
            latest,
            limit,
            min_depth,
        )

    async def get_auth_chain_ids(self, event_ids: Collection[str]) -> set[str]:
        """Every event in the auth chains of ``event_ids`` (their auth events,
        recursively), not counting ``event_ids`` themselves unless one is another's
        auth event."""
        if not event_ids:
            return set()
        return await self.db.run_interaction("get_auth_chain_ids", _auth_chain, list(event_ids))

    async def get_backward_extremities(self, room_id: str) -> list[tuple[str, int]]:
        """The room's gaps: each event a timeline event points at that we do not hold
        in the timeline (missing, or only an outlier), with the greatest depth of the
        events pointing at it."""
        rows = await self.db.execute(
            "get_backward_extremities",
            "SELECT g.prev_event_id, MAX(ev.depth) FROM events ev"
            " JOIN event_edges g ON g.event_id = ev.event_id"
            " LEFT JOIN events p ON p.event_id = g.prev_event_id"
            " WHERE ev.room_id = ? AND ev.outlier = ? AND ev.rejected_reason IS NULL"
            " AND (p.event_id IS NULL OR p.outlier = ?)"
            " GROUP BY g.prev_event_id",
            room_id,
            False,
            True,
        )
        return [(row[0], int(row[1])) for row in rows]

    async def get_joined_members_of_server(self, room_id: str, server_name: str) -> list[str]:
        """The users of ``server_name`` joined to the room now."""
        rows = await self.db.execute(
            "get_joined_members",
            "SELECT state_key FROM current_state_events"
            " WHERE room_id = ? AND type = 'm.room.member' AND membership = 'join'",
            room_id,
        )
        return [row[0] for row in rows if _domain(row[0]) == server_name]

    async def get_joined_servers(self, room_id: str) -> list[str]:
        rows = await self.db.execute(
            "get_joined_servers_for_federation",
            "SELECT state_key FROM current_state_events"
            " WHERE room_id = ? AND type = 'm.room.member' AND membership = 'join'",
            room_id,
        )
        return sorted({_domain(row[0]) for row in rows if ":" in row[0]})


def _domain(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def _placeholders(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _backfill(cursor: Cursor, room_id: str, event_ids: list[str], limit: int) -> list[str]:
    # A walk of at most ``limit`` hops reaches every event a depth-ordered walk would
    # return first; the closest ``limit`` by depth are kept.
    cursor.execute(
        "WITH RECURSIVE walk(event_id, hops) AS ("
        f" SELECT event_id, 0 FROM events WHERE event_id IN ({_placeholders(event_ids)})"
        " AND room_id = ? AND outlier = ?"
        " UNION"
        " SELECT g.prev_event_id, w.hops + 1 FROM walk w"
        " JOIN event_edges g ON g.event_id = w.event_id"
        " JOIN events p ON p.event_id = g.prev_event_id"
        " WHERE w.hops < ? AND p.room_id = ? AND p.outlier = ?"
        ") SELECT e.event_id, e.depth, e.stream_ordering FROM events e"
        " WHERE e.event_id IN (SELECT event_id FROM walk) AND e.rejected_reason IS NULL"
        " ORDER BY e.depth DESC, e.stream_ordering DESC LIMIT ?",
        (*event_ids, room_id, False, limit, room_id, False, limit),
    )
    return [row[0] for row in cursor.fetchall()]


def _missing(
    cursor: Cursor,
    room_id: str,
    earliest: list[str],
    latest: list[str],
    limit: int,
    min_depth: int,
) -> list[str]:
    # Breadth first from the latest events' prev events; the earliest events are known
    # to the asker, so the walk neither returns nor passes them.
    stop = f" AND g.prev_event_id NOT IN ({_placeholders(earliest)})" if earliest else ""
    cursor.execute(
        "WITH RECURSIVE walk(event_id, hops) AS ("
        f" SELECT event_id, 0 FROM events WHERE event_id IN ({_placeholders(latest)})"
        " AND room_id = ?"
        " UNION"
        " SELECT g.prev_event_id, w.hops + 1 FROM walk w"
        " JOIN event_edges g ON g.event_id = w.event_id"
        " JOIN events p ON p.event_id = g.prev_event_id"
        f" WHERE w.hops < ? AND p.room_id = ? AND p.outlier = ? AND p.depth >= ?{stop}"
        ") SELECT e.event_id, e.depth, MIN(w.hops) FROM walk w"
        " JOIN events e ON e.event_id = w.event_id"
        " WHERE w.hops > 0 AND e.rejected_reason IS NULL"
        " GROUP BY e.event_id, e.depth, e.stream_ordering"
        " ORDER BY MIN(w.hops), e.depth DESC, e.stream_ordering DESC LIMIT ?",
        (*latest, room_id, limit, room_id, False, min_depth, *earliest, limit),
    )
    rows = cursor.fetchall()
    # Oldest first, so the asker can process each after its own prev events.
    rows.sort(key=lambda row: int(row[1]))
    return [row[0] for row in rows]


def _auth_chain(cursor: Cursor, event_ids: list[str]) -> set[str]:
    result: set[str] = set()
    for start in range(0, len(event_ids), 500):
        chunk = event_ids[start : start + 500]
        cursor.execute(
            "WITH RECURSIVE chain(event_id) AS ("
            f" SELECT auth_id FROM event_auth WHERE event_id IN ({_placeholders(chunk)})"
            " UNION"
            " SELECT a.auth_id FROM event_auth a JOIN chain c ON a.event_id = c.event_id"
            ") SELECT event_id FROM chain",
            chunk,
        )
        result.update(row[0] for row in cursor.fetchall())
    return result
