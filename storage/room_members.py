"""Room membership queries that the event store's room head does not answer.

The membership rows themselves are written by ``storage.events`` with each event; this
store reads them (members of a room, a user's last membership) and keeps the one fact
that is not an event: that a user forgot a room.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.engine import Database


@dataclass(frozen=True)
class MemberRow:
    user_id: str
    membership: str
    event_id: str


@dataclass(frozen=True)
class LastMembership:
    event_id: str
    membership: str
    forgotten: bool


class RoomMemberStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_current_members(
        self, room_id: str, memberships: Sequence[str] | None = None
    ) -> list[MemberRow]:
        """The room's members in its current state, optionally only those of ``memberships``."""
        sql = (
            "SELECT state_key, membership, event_id FROM current_state_events"
            " WHERE room_id = ? AND type = 'm.room.member'"
        )
        args: list[str] = [room_id]
        if memberships is not None:
            if not memberships:
                return []
            sql += f" AND membership IN ({','.join('?' * len(memberships))})"
            args.extend(memberships)
        rows = await self.db.execute("get_current_members", sql + " ORDER BY state_key", *args)
        return [MemberRow(user_id, membership, event_id) for user_id, membership, event_id in rows]

    async def get_last_membership(self, user_id: str, room_id: str) -> LastMembership | None:
        """The user's latest membership event in the room, whatever it was."""
        rows = await self.db.execute(
            "get_last_membership",
            "SELECT event_id, membership, forgotten FROM room_memberships"
            " WHERE user_id = ? AND room_id = ? ORDER BY stream_ordering DESC LIMIT 1",
            user_id,
            room_id,
        )
        if not rows:
            return None
        event_id, membership, forgotten = rows[0]
        return LastMembership(event_id, membership, bool(forgotten))

    async def forget(self, user_id: str, room_id: str) -> None:
        """Mark every membership of the user in the room so far as forgotten.

        A later membership event is a new row, so rejoining un-forgets the room.
        """
        await self.db.execute(
            "forget_room",
            "UPDATE room_memberships SET forgotten = TRUE WHERE user_id = ? AND room_id = ?",
            user_id,
            room_id,
        )

    async def get_forgotten_rooms(self, user_id: str) -> set[str]:
        """Rooms whose latest membership of the user is forgotten."""
        rows = await self.db.execute(
            "get_forgotten_rooms",
            "SELECT m.room_id FROM room_memberships m"
            " WHERE m.user_id = ? AND m.forgotten = TRUE AND m.stream_ordering = ("
            "   SELECT MAX(l.stream_ordering) FROM room_memberships l"
            "   WHERE l.user_id = m.user_id AND l.room_id = m.room_id)",
            user_id,
        )
        return {row[0] for row in rows}

    async def get_rooms_by_membership(
        self, user_id: str, memberships: Sequence[str]
    ) -> list[tuple[str, str]]:
        """(room ID, membership) of the rooms where the user's current membership is one of
        ``memberships``."""
        if not memberships:
            return []
        rows = await self.db.execute(
            "get_rooms_by_membership",
            "SELECT room_id, membership FROM current_state_events"
            " WHERE type = 'm.room.member' AND state_key = ?"
            f" AND membership IN ({','.join('?' * len(memberships))}) ORDER BY room_id",
            user_id,
            *memberships,
        )
        return [(room_id, membership) for room_id, membership in rows]
