"""The "device_lists" stream: which users' devices or keys changed, and when.

A change (a device's keys uploaded, a device deleted, cross-signing keys or signatures
uploaded) is written in the same transaction as the change itself, at one stream position,
so a /sync that sees the position also sees the change. Readers then work out, from the
rooms users share, whom each change concerns.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TypeVar

from storage.engine import Cursor, Database
from storage.stream_ids import StreamIdGenerator

T = TypeVar("T")
_CHUNK = 500

# (user_id, device_id or None for a cross-signing change)
Change = tuple[str, str | None]


@dataclass(frozen=True)
class MembershipChange:
    user_id: str
    room_id: str
    membership: str
    stream_ordering: int


def record_changes_txn(cursor: Cursor, position: int, changes: Collection[Change]) -> None:
    cursor.execute_batch(
        "INSERT INTO device_lists_stream (stream_id, user_id, device_id) VALUES (?, ?, ?)",
        [(position, user_id, device_id) for user_id, device_id in changes],
    )


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


class DeviceListStore:
    name = "device_lists"

    def __init__(self, db: Database) -> None:
        self.db = db
        self.stream_ids = StreamIdGenerator(0)

    async def load_positions(self) -> None:
        rows = await self.db.execute(
            "device_lists_max_stream", "SELECT COALESCE(MAX(stream_id), 0) FROM device_lists_stream"
        )
        self.stream_ids = StreamIdGenerator(int(rows[0][0]) if rows else 0)

    def current_position(self) -> int:
        return self.stream_ids.current_token()

    async def run_changing(
        self, desc: str, func: Callable[[Cursor], tuple[T, Collection[Change]]]
    ) -> tuple[T, int | None]:
        """Run ``func`` as one transaction; the changes it reports are recorded in it at a
        new stream position. Returns its result and the position (None if nothing changed)."""
        [position] = self.stream_ids.allocate(1)

        def txn(cursor: Cursor) -> tuple[T, bool]:
            result, changes = func(cursor)
            if changes:
                record_changes_txn(cursor, position, changes)
            return result, bool(changes)

        try:
            result, changed = await self.db.run_interaction(desc, txn)
        finally:
            self.stream_ids.finished([position])
        return result, position if changed else None

    # --- readers ---------------------------------------------------------------------------

    async def get_changed_users(self, after: int, upto: int) -> set[str]:
        """Users with a change at a position in (after, upto]."""
        if after >= upto:
            return set()
        rows = await self.db.execute(
            "device_lists_changed_users",
            "SELECT DISTINCT user_id FROM device_lists_stream"
            " WHERE stream_id > ? AND stream_id <= ?",
            after,
            upto,
        )
        return {row[0] for row in rows}

    async def get_users_sharing_room(
        self, user_id: str, among: Collection[str] | None = None
    ) -> set[str]:
        """The users joined to a room ``user_id`` is joined to (themselves included if
        joined anywhere); with ``among``, only those of ``among``."""

        def txn(cursor: Cursor) -> set[str]:
            sql = (
                "SELECT DISTINCT other.state_key FROM current_state_events AS me"
                " JOIN current_state_events AS other ON other.room_id = me.room_id"
                " WHERE me.type = 'm.room.member' AND me.state_key = ?"
                " AND me.membership = 'join'"
                " AND other.type = 'm.room.member' AND other.membership = 'join'"
            )
            if among is None:
                cursor.execute(sql, (user_id,))
                return {row[0] for row in cursor.fetchall()}
            found: set[str] = set()
            for chunk in _chunks(sorted(among)):
                placeholders = ",".join("?" * len(chunk))
                cursor.execute(f"{sql} AND other.state_key IN ({placeholders})", (user_id, *chunk))
                found.update(row[0] for row in cursor.fetchall())
            return found

        return await self.db.run_interaction("users_sharing_room", txn)

    async def get_membership_changes_near(
        self, user_id: str, after: int, upto: int
    ) -> list[MembershipChange]:
        """Every membership change in (after, upto] in any room ``user_id`` has ever been
        in, oldest first."""
        if after >= upto:
            return []
        rows = await self.db.execute(
            "device_lists_membership_changes",
            "SELECT user_id, room_id, membership, stream_ordering FROM room_memberships"
            " WHERE stream_ordering > ? AND stream_ordering <= ? AND room_id IN"
            " (SELECT DISTINCT room_id FROM room_memberships WHERE user_id = ?)"
            " ORDER BY stream_ordering",
            after,
            upto,
            user_id,
        )
        return [MembershipChange(*row) for row in rows]

    async def get_joined_members(self, room_ids: Collection[str]) -> set[str]:
        def txn(cursor: Cursor) -> set[str]:
            found: set[str] = set()
            for chunk in _chunks(sorted(room_ids)):
                placeholders = ",".join("?" * len(chunk))
                cursor.execute(
                    "SELECT DISTINCT state_key FROM current_state_events"
                    f" WHERE type = 'm.room.member' AND membership = 'join'"
                    f" AND room_id IN ({placeholders})",
                    tuple(chunk),
                )
                found.update(row[0] for row in cursor.fetchall())
            return found

        if not room_ids:
            return set()
        return await self.db.run_interaction("joined_members_of_rooms", txn)
