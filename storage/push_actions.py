"""Push actions per (user, event), the unread counts summed from them, and the read
positions (from read receipts) the counts start after.

Counts are "events after the user's read position": per room, the later of the user's
``m.read`` and ``m.read.private`` receipts; per thread, the later of that unthreaded
position and the user's receipts in the thread (the main timeline is the thread "main").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from storage.engine import Cursor, Database

MAIN_THREAD = "main"
READ_RECEIPT_TYPES = ("m.read", "m.read.private")
# The receipts table keeps an unthreaded receipt under this thread_id.
_UNTHREADED_RECEIPT = ""
_ROOM_CHUNK = 100


@dataclass(frozen=True)
class PushActionRow:
    user_id: str
    event_id: str
    room_id: str
    stream_ordering: int
    thread_id: str
    actions: Sequence[Any]
    notify: bool
    highlight: bool


@dataclass(frozen=True)
class ReadPositions:
    """Where a user has read up to in one room, as event stream orderings (0: nowhere)."""

    unthreaded: int = 0
    threads: Mapping[str, int] = field(default_factory=dict)

    def position(self, thread_id: str) -> int:
        return max(self.unthreaded, self.threads.get(thread_id, 0))


@dataclass(frozen=True)
class NotificationRow:
    event_id: str
    room_id: str
    stream_ordering: int
    thread_id: str
    actions: list[Any]
    received_ts: int


class PushActionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_joined_members(self, room_id: str) -> list[tuple[str, str]]:
        """(user ID, membership event ID) of the room's joined members, now."""
        rows = await self.db.execute(
            "push_joined_members",
            "SELECT state_key, event_id FROM current_state_events"
            " WHERE room_id = ? AND type = 'm.room.member' AND membership = 'join'",
            room_id,
        )
        return [(row[0], row[1]) for row in rows]

    async def store_actions(
        self, rows: Sequence[PushActionRow], redacted: Sequence[str], now_ms: int
    ) -> None:
        """Add the actions of a batch of events and drop those of events just redacted
        (a redacted message stops counting), in one transaction."""
        if not rows and not redacted:
            return
        await self.db.run_interaction(
            "store_push_actions", _store, list(rows), list(redacted), now_ms
        )

    async def read_positions(
        self, user_id: str, room_ids: Sequence[str]
    ) -> dict[str, ReadPositions]:
        """The user's read positions in each room, from their read receipts (one query
        per chunk of rooms). Rooms without a receipt are absent."""
        return await self.db.run_interaction(
            "push_read_positions", _read_positions, user_id, list(room_ids)
        )

    async def receipt_position(self, user_id: str, room_id: str, thread_id: str | None) -> int:
        """The stream ordering the user has read up to in the room's thread (``None`` or
        "main" for the main timeline), counting unthreaded receipts too; 0 if none."""
        positions = (await self.read_positions(user_id, [room_id])).get(room_id)
        if positions is None:
            return 0
        return positions.position(thread_id or MAIN_THREAD)

    async def count_unread_after_receipts(
        self, user_id: str, room_ids: Sequence[str]
    ) -> dict[str, dict[str, tuple[int, int]]]:
        """(notifications, highlights) per room and thread of ``room_ids``, counting only
        events after the user's read receipts there (from the start where they have none);
        the receipts are read in the same transaction: one round trip on every /sync."""
        return await self.db.run_interaction(
            "count_unread_after_receipts", _count_unread_after_receipts, user_id, list(room_ids)
        )

    async def get_notifications(
        self, user_id: str, *, before: int | None, limit: int, only_highlight: bool
    ) -> list[NotificationRow]:
        """The user's notifications, newest first, with stream ordering below ``before``."""
        sql = (
            "SELECT event_id, room_id, stream_ordering, thread_id, actions, received_ts"
            " FROM event_push_actions WHERE user_id = ? AND notif = 1"
        )
        args: list[Any] = [user_id]
        if only_highlight:
            sql += " AND highlight = 1"
        if before is not None:
            sql += " AND stream_ordering < ?"
            args.append(before)
        sql += " ORDER BY stream_ordering DESC LIMIT ?"
        args.append(limit)
        rows = await self.db.execute("get_notifications", sql, *args)
        return [
            NotificationRow(
                event_id=r[0],
                room_id=r[1],
                stream_ordering=int(r[2]),
                thread_id=r[3],
                actions=json.loads(r[4]),
                received_ts=int(r[5]),
            )
            for r in rows
        ]


def _store(cursor: Cursor, rows: list[PushActionRow], redacted: list[str], now_ms: int) -> None:
    cursor.execute_batch(
        "INSERT INTO event_push_actions (user_id, event_id, room_id, stream_ordering,"
        " thread_id, actions, notif, highlight, received_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (user_id, event_id) DO NOTHING",
        [
            (
                r.user_id,
                r.event_id,
                r.room_id,
                r.stream_ordering,
                r.thread_id,
                json.dumps(list(r.actions)),
                1 if r.notify else 0,
                1 if r.highlight else 0,
                now_ms,
            )
            for r in rows
        ],
    )
    if redacted:
        placeholders = ",".join("?" * len(redacted))
        cursor.execute(
            f"DELETE FROM event_push_actions WHERE event_id IN ({placeholders})", redacted
        )


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _ROOM_CHUNK):
        yield items[start : start + _ROOM_CHUNK]


def _read_positions(cursor: Cursor, user_id: str, room_ids: list[str]) -> dict[str, ReadPositions]:
    unthreaded: dict[str, int] = {}
    threads: dict[str, dict[str, int]] = {}
    for chunk in _chunks(room_ids):
        placeholders = ",".join("?" * len(chunk))
        cursor.execute(
            "SELECT room_id, thread_id, MAX(event_stream_ordering) FROM receipts"
            " WHERE user_id = ? AND receipt_type IN (?, ?)"
            f" AND room_id IN ({placeholders}) GROUP BY room_id, thread_id",
            (user_id, *READ_RECEIPT_TYPES, *chunk),
        )
        for room_id, thread_id, position in cursor.fetchall():
            if thread_id == _UNTHREADED_RECEIPT:
                unthreaded[room_id] = int(position)
            else:
                threads.setdefault(room_id, {})[thread_id] = int(position)
    return {
        room_id: ReadPositions(unthreaded.get(room_id, 0), threads.get(room_id, {}))
        for room_id in set(unthreaded) | set(threads)
    }


def _count_unread_after_receipts(
    cursor: Cursor, user_id: str, room_ids: list[str]
) -> dict[str, dict[str, tuple[int, int]]]:
    positions = _read_positions(cursor, user_id, room_ids)
    return _count_unread(
        cursor, user_id, {room_id: positions.get(room_id, ReadPositions()) for room_id in room_ids}
    )


def _count_unread(
    cursor: Cursor, user_id: str, positions: dict[str, ReadPositions]
) -> dict[str, dict[str, tuple[int, int]]]:
    result: dict[str, dict[str, tuple[int, int]]] = {}
    for chunk in _chunks(sorted(positions)):
        # One clause per room (its unthreaded position) plus one per thread the user has
        # a threaded receipt in, so every room is counted by the same single query.
        clauses: list[str] = []
        args: list[Any] = [user_id]
        for room_id in chunk:
            read = positions[room_id]
            ahead = {t: p for t, p in read.threads.items() if p > read.unthreaded}
            if ahead:
                placeholders = ",".join("?" * len(ahead))
                clauses.append(
                    f"(room_id = ? AND stream_ordering > ? AND thread_id NOT IN ({placeholders}))"
                )
                args.extend([room_id, read.unthreaded, *ahead])
                for thread_id, position in ahead.items():
                    clauses.append("(room_id = ? AND thread_id = ? AND stream_ordering > ?)")
                    args.extend([room_id, thread_id, position])
            else:
                clauses.append("(room_id = ? AND stream_ordering > ?)")
                args.extend([room_id, read.unthreaded])
        cursor.execute(
            "SELECT room_id, thread_id, SUM(notif), SUM(highlight) FROM event_push_actions"
            f" WHERE user_id = ? AND ({' OR '.join(clauses)}) GROUP BY room_id, thread_id",
            args,
        )
        for room_id, thread_id, notifs, highlights in cursor.fetchall():
            result.setdefault(room_id, {})[thread_id] = (int(notifs or 0), int(highlights or 0))
    return result
