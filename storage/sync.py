"""The queries behind /sync: each answers for all of a user's rooms at once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from storage.engine import Cursor, Database
from storage.state import StateMap, read_state_groups

_CHUNK = 500


@dataclass(frozen=True)
class MembershipRow:
    room_id: str
    membership: str
    event_id: str
    stream_ordering: int
    # The user forgot the room after leaving it: /sync no longer mentions it.
    forgotten: bool = False


@dataclass(frozen=True)
class MemberSummary:
    joined: int
    invited: int
    # Up to six joined or invited members, in a stable order, for the room's "heroes".
    first_members: tuple[str, ...]


class SyncStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_current_memberships(self, user_id: str) -> list[MembershipRow]:
        """The user's membership in every room they have one in, with its position."""
        rows = await self.db.execute(
            "sync_current_memberships",
            "SELECT c.room_id, c.membership, c.event_id, e.stream_ordering, m.forgotten"
            " FROM current_state_events c JOIN events e ON e.event_id = c.event_id"
            " LEFT JOIN room_memberships m ON m.event_id = c.event_id"
            " WHERE c.type = 'm.room.member' AND c.state_key = ?",
            user_id,
        )
        return [MembershipRow(r[0], r[1], r[2], int(r[3]), bool(r[4])) for r in rows]

    async def get_membership_changes(
        self, user_id: str, after: int, upto: int
    ) -> list[MembershipRow]:
        """The user's membership events in (after, upto], oldest first."""
        rows = await self.db.execute(
            "sync_membership_changes",
            "SELECT room_id, membership, event_id, stream_ordering FROM room_memberships"
            " WHERE user_id = ? AND stream_ordering > ? AND stream_ordering <= ?"
            " ORDER BY stream_ordering",
            user_id,
            after,
            upto,
        )
        return [MembershipRow(r[0], r[1], r[2], int(r[3])) for r in rows]

    async def get_rooms_changed(self, after: int, upto: int) -> set[str]:
        """Rooms with events in (after, upto]: a range scan of the newest events."""
        rows = await self.db.execute(
            "sync_rooms_changed",
            "SELECT DISTINCT room_id FROM events"
            " WHERE stream_ordering > ? AND stream_ordering <= ?",
            after,
            upto,
        )
        return {row[0] for row in rows}

    async def get_recent_events(
        self, room_ids: Collection[str], after: int | None, upto: int, limit: int
    ) -> dict[str, list[str]]:
        """For each room, the IDs of up to ``limit`` newest events in (after, upto], oldest
        first. Rejected events and outliers are never part of a timeline."""
        if not room_ids:
            return {}
        return await self.db.run_interaction(
            "sync_recent_events", _recent_events, sorted(room_ids), after, upto, limit
        )

    async def get_last_events_at(self, room_ids: Collection[str], upto: int) -> dict[str, str]:
        """For each room, its newest event at or before ``upto`` (the room at a token)."""
        return await self.db.run_interaction(
            "sync_last_events_at", _last_events_at, sorted(room_ids), upto
        )

    async def get_member_summaries(self, room_ids: Collection[str]) -> dict[str, MemberSummary]:
        if not room_ids:
            return {}
        return await self.db.run_interaction(
            "sync_member_summaries", _member_summaries, sorted(room_ids)
        )

    async def get_states_after(self, event_ids: Collection[str]) -> dict[str, StateMap]:
        """The state after each event, read in one transaction."""
        if not event_ids:
            return {}
        return await self.db.run_interaction("sync_states_after", _states_after, list(event_ids))


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _recent_events(
    cursor: Cursor, room_ids: list[str], after: int | None, upto: int, limit: int
) -> dict[str, list[str]]:
    result: dict[str, list[str]] = defaultdict(list)
    for chunk in _chunks(room_ids):
        placeholders = ",".join("?" * len(chunk))
        args: list[Any] = [*chunk, upto]
        lower = ""
        if after is not None:
            lower = " AND stream_ordering > ?"
            args.append(after)
        args.append(limit)
        cursor.execute(
            "SELECT room_id, event_id FROM ("
            " SELECT room_id, event_id, stream_ordering, ROW_NUMBER() OVER"
            "  (PARTITION BY room_id ORDER BY stream_ordering DESC) AS n"
            f" FROM events WHERE room_id IN ({placeholders}) AND stream_ordering <= ?{lower}"
            "  AND outlier = FALSE AND rejected_reason IS NULL"
            ") recent WHERE n <= ? ORDER BY stream_ordering",
            args,
        )
        for room_id, event_id in cursor.fetchall():
            result[room_id].append(event_id)
    return dict(result)


def _last_events_at(cursor: Cursor, room_ids: list[str], upto: int) -> dict[str, str]:
    result: dict[str, str] = {}
    for chunk in _chunks(room_ids):
        placeholders = ",".join("?" * len(chunk))
        cursor.execute(
            "SELECT e.room_id, e.event_id FROM events e JOIN ("
            " SELECT room_id, MAX(stream_ordering) AS newest FROM events"
            f" WHERE room_id IN ({placeholders}) AND stream_ordering <= ?"
            "  AND outlier = FALSE AND rejected_reason IS NULL GROUP BY room_id"
            ") last ON e.stream_ordering = last.newest",
            [*chunk, upto],
        )
        result.update({room_id: event_id for room_id, event_id in cursor.fetchall()})
    return result


def _member_summaries(cursor: Cursor, room_ids: list[str]) -> dict[str, MemberSummary]:
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    firsts: dict[str, list[str]] = defaultdict(list)
    for chunk in _chunks(room_ids):
        placeholders = ",".join("?" * len(chunk))
        cursor.execute(
            "SELECT room_id, membership, COUNT(*) FROM current_state_events"
            f" WHERE type = 'm.room.member' AND room_id IN ({placeholders})"
            " GROUP BY room_id, membership",
            chunk,
        )
        for room_id, membership, count in cursor.fetchall():
            counts[room_id][membership] = int(count)
        cursor.execute(
            "SELECT room_id, state_key FROM ("
            " SELECT c.room_id, c.state_key, ROW_NUMBER() OVER"
            "  (PARTITION BY c.room_id ORDER BY e.stream_ordering) AS n"
            " FROM current_state_events c JOIN events e ON e.event_id = c.event_id"
            f" WHERE c.type = 'm.room.member' AND c.room_id IN ({placeholders})"
            "  AND c.membership IN ('join', 'invite')"
            ") members WHERE n <= 6",
            chunk,
        )
        for room_id, state_key in cursor.fetchall():
            firsts[room_id].append(state_key)
    return {
        room_id: MemberSummary(
            joined=counts[room_id].get("join", 0),
            invited=counts[room_id].get("invite", 0),
            first_members=tuple(firsts.get(room_id, ())),
        )
        for room_id in room_ids
    }


def _states_after(cursor: Cursor, event_ids: list[str]) -> dict[str, StateMap]:
    groups: dict[str, int] = {}
    for chunk in _chunks(event_ids):
        placeholders = ",".join("?" * len(chunk))
        cursor.execute(
            f"SELECT event_id, state_group FROM events WHERE event_id IN ({placeholders})"
            " AND state_group IS NOT NULL",
            chunk,
        )
        groups.update({event_id: int(group) for event_id, group in cursor.fetchall()})
    states = read_state_groups(cursor, groups.values())
    return {event_id: states[group] for event_id, group in groups.items()}
