"""Room aliases this server answers for, and the rooms published in its room directory."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from homeserver.events.redaction import prune_event_dict
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from storage.engine import Cursor, Database

# The state a public room list entry is made of (all with state key "").
DIRECTORY_STATE_TYPES = (
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
)

# Keeps each IN (...) list well under SQLite's host-parameter limit.
_IN_CHUNK = 500


@dataclass(frozen=True)
class AliasRecord:
    alias: str
    room_id: str
    creator: str | None


@dataclass
class PublicRoomRow:
    """A published room: its joined member count and the directory state's contents."""

    room_id: str
    joined_members: int
    state: dict[str, dict[str, Any]] = field(default_factory=dict)  # type -> content


class DirectoryStore:
    def __init__(self, db: Database, now_ms: Callable[[], int] | None = None) -> None:
        self.db = db
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))

    # --- aliases ----------------------------------------------------------------------

    async def create_alias(self, alias: str, room_id: str, creator: str | None) -> bool:
        """Point ``alias`` at ``room_id``; False (and nothing written) if it is taken."""

        def insert(cursor: Cursor) -> bool:
            cursor.execute(
                "INSERT INTO room_aliases (room_alias, room_id, creator, created_ts)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (room_alias) DO NOTHING",
                (alias, room_id, creator, self._now_ms()),
            )
            return cursor.rowcount == 1

        result: bool = await self.db.run_interaction("create_alias", insert)
        return result

    async def get_alias(self, alias: str) -> AliasRecord | None:
        rows = await self.db.execute(
            "get_alias",
            "SELECT room_id, creator FROM room_aliases WHERE room_alias = ?",
            alias,
        )
        if not rows:
            return None
        return AliasRecord(alias, rows[0][0], rows[0][1])

    async def delete_alias(self, alias: str) -> str | None:
        """Remove ``alias``; the room it pointed to, or None if there was no such alias."""
        rows = await self.db.execute(
            "delete_alias",
            "DELETE FROM room_aliases WHERE room_alias = ? RETURNING room_id",
            alias,
        )
        return rows[0][0] if rows else None

    async def get_aliases_for_room(self, room_id: str) -> list[str]:
        rows = await self.db.execute(
            "get_aliases_for_room",
            "SELECT room_alias FROM room_aliases WHERE room_id = ? ORDER BY created_ts, room_alias",
            room_id,
        )
        return [row[0] for row in rows]

    async def get_joined_servers(self, room_id: str) -> list[str]:
        """The servers with a joined member in the room, in no particular order."""
        rows = await self.db.execute(
            "get_joined_servers",
            "SELECT state_key FROM current_state_events"
            " WHERE room_id = ? AND type = 'm.room.member' AND membership = 'join'",
            room_id,
        )
        return sorted({row[0].split(":", 1)[1] for row in rows if ":" in row[0]})

    # --- the published room list ------------------------------------------------------

    async def get_room_is_public(self, room_id: str) -> bool | None:
        """Whether the room is published; None if we do not know the room."""
        rows = await self.db.execute(
            "get_room_is_public", "SELECT is_public FROM rooms WHERE room_id = ?", room_id
        )
        return bool(rows[0][0]) if rows else None

    async def set_room_is_public(self, room_id: str, is_public: bool) -> bool:
        """Publish or unpublish a room; False if we do not know the room."""

        def update(cursor: Cursor) -> bool:
            cursor.execute("UPDATE rooms SET is_public = ? WHERE room_id = ?", (is_public, room_id))
            return cursor.rowcount == 1

        result: bool = await self.db.run_interaction("set_room_is_public", update)
        return result

    async def get_public_rooms(self) -> list[PublicRoomRow]:
        """Every published room with its joined member count and directory state.

        Two queries whatever the number of rooms: the counts, then the state of them all.
        """

        def read(cursor: Cursor) -> list[PublicRoomRow]:
            cursor.execute(
                "SELECT r.room_id, COUNT(c.state_key) FROM rooms r"
                " LEFT JOIN current_state_events c ON c.room_id = r.room_id"
                " AND c.type = 'm.room.member' AND c.membership = 'join'"
                " WHERE r.is_public = ? GROUP BY r.room_id",
                (True,),
            )
            rooms = {row[0]: PublicRoomRow(row[0], int(row[1])) for row in cursor.fetchall()}
            if not rooms:
                return []
            placeholders = ",".join("?" * len(DIRECTORY_STATE_TYPES))
            cursor.execute(
                "SELECT c.room_id, c.type, e.json, r.room_version,"
                " (SELECT COUNT(*) FROM redactions x WHERE x.redacts = c.event_id)"
                " FROM rooms r"
                " JOIN current_state_events c ON c.room_id = r.room_id"
                " JOIN events e ON e.event_id = c.event_id"
                f" WHERE r.is_public = ? AND c.state_key = '' AND c.type IN ({placeholders})",
                (True, *DIRECTORY_STATE_TYPES),
            )
            for room_id, event_type, pdu_json, room_version, redactions in cursor.fetchall():
                room = rooms.get(room_id)
                if room is not None:
                    room.state[event_type] = _content(pdu_json, room_version, redactions > 0)
            return list(rooms.values())

        result: list[PublicRoomRow] = await self.db.run_interaction("get_public_rooms", read)
        return result

    async def get_rooms_state(
        self, room_ids: Sequence[str], types: Sequence[str] = DIRECTORY_STATE_TYPES
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """For each room, the content of its current ``types`` state (state key "")."""

        def read(cursor: Cursor) -> dict[str, dict[str, dict[str, Any]]]:
            found: dict[str, dict[str, dict[str, Any]]] = {room_id: {} for room_id in room_ids}
            type_marks = ",".join("?" * len(types))
            ids = list(room_ids)
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                room_marks = ",".join("?" * len(chunk))
                cursor.execute(
                    "SELECT c.room_id, c.type, e.json, r.room_version,"
                    " (SELECT COUNT(*) FROM redactions x WHERE x.redacts = c.event_id)"
                    " FROM current_state_events c"
                    " JOIN events e ON e.event_id = c.event_id"
                    " JOIN rooms r ON r.room_id = c.room_id"
                    f" WHERE c.room_id IN ({room_marks}) AND c.state_key = ''"
                    f" AND c.type IN ({type_marks})",
                    (*chunk, *types),
                )
                for room_id, event_type, pdu_json, room_version, redactions in cursor.fetchall():
                    found[room_id][event_type] = _content(pdu_json, room_version, redactions > 0)
            return found

        result: dict[str, dict[str, dict[str, Any]]] = await self.db.run_interaction(
            "get_rooms_state", read
        )
        return result


def _content(pdu_json: str, room_version_id: str, redacted: bool) -> dict[str, Any]:
    pdu = json.loads(pdu_json)
    room_version = KNOWN_ROOM_VERSIONS.get(room_version_id)
    if redacted and room_version is not None:
        # Over-approximates: a redaction we hold is taken as applying, as for any
        # redaction of a state event sent by a user allowed to redact it.
        pdu = prune_event_dict(pdu, room_version)
    content = pdu.get("content")
    return content if isinstance(content, dict) else {}
