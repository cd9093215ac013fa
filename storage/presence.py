"""The presence of local users, one row each, with the stream position of its last change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.engine import Cursor, Database
from storage.stream_ids import StreamIdGenerator

_USER_CHUNK = 500


@dataclass(frozen=True)
class PresenceRow:
    user_id: str
    state: str  # "online", "unavailable" or "offline"
    status_msg: str | None
    last_active_ts: int  # 0: never active
    currently_active: bool
    stream_id: int = 0


class PresenceStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.stream_ids = StreamIdGenerator(0)

    async def load_positions(self) -> None:
        rows = await self.db.execute(
            "load_presence_position", "SELECT COALESCE(MAX(stream_id), 0) FROM presence"
        )
        self.stream_ids = StreamIdGenerator(int(rows[0][0]))

    def current_position(self) -> int:
        return self.stream_ids.current_token()

    async def put(self, row: PresenceRow) -> int:
        """Store the user's presence; the stream position of the change."""
        (stream_id,) = self.stream_ids.allocate()
        try:
            await self.db.run_interaction("put_presence", _upsert, row, stream_id)
        finally:
            self.stream_ids.finished([stream_id])
        return stream_id

    async def get(self, user_ids: Sequence[str]) -> dict[str, PresenceRow]:
        return await self._select(user_ids, None)

    async def get_changes(self, user_ids: Sequence[str], since: int) -> dict[str, PresenceRow]:
        """Rows of ``user_ids`` changed after ``since``."""
        return await self._select(user_ids, since)

    async def get_not_offline(self) -> list[PresenceRow]:
        """Everyone whose presence the idle and offline timers still have to watch."""
        rows = await self.db.execute(
            "get_not_offline_presence",
            "SELECT user_id, state, status_msg, last_active_ts, currently_active, stream_id"
            " FROM presence WHERE state <> 'offline'",
        )
        return [_row(r) for r in rows]

    async def get_changed_users(self, since: int) -> list[str]:
        """Everyone whose presence changed after ``since`` (the few since a recent token)."""
        rows = await self.db.execute(
            "get_changed_presence_users",
            "SELECT user_id FROM presence WHERE stream_id > ?",
            since,
        )
        return [str(r[0]) for r in rows]

    async def get_joined_users(
        self, room_ids: Sequence[str], among: Sequence[str] | None = None
    ) -> set[str]:
        """The users joined to any of ``room_ids`` (only those of ``among`` if given)."""
        found: set[str] = set()
        rooms = list(room_ids)
        if among is not None and not among:
            return found
        for start in range(0, len(rooms), _USER_CHUNK):
            chunk = rooms[start : start + _USER_CHUNK]
            sql = (
                "SELECT DISTINCT state_key FROM current_state_events"
                " WHERE type = 'm.room.member' AND membership = 'join'"
                f" AND room_id IN ({','.join('?' * len(chunk))})"
            )
            args: list[str] = list(chunk)
            if among is not None:
                sql += f" AND state_key IN ({','.join('?' * len(among))})"
                args.extend(among)
            rows = await self.db.execute("get_joined_users", sql, *args)
            found.update(str(r[0]) for r in rows)
        return found

    async def _select(self, user_ids: Sequence[str], since: int | None) -> dict[str, PresenceRow]:
        found: dict[str, PresenceRow] = {}
        users = list(user_ids)
        for start in range(0, len(users), _USER_CHUNK):
            chunk = users[start : start + _USER_CHUNK]
            placeholders = ",".join("?" * len(chunk))
            rows = await self.db.execute(
                "get_presence",
                "SELECT user_id, state, status_msg, last_active_ts, currently_active, stream_id"
                f" FROM presence WHERE user_id IN ({placeholders}) AND stream_id > ?",
                *chunk,
                -1 if since is None else since,
            )
            for r in rows:
                row = _row(r)
                found[row.user_id] = row
        return found


def _row(r: tuple[object, ...]) -> PresenceRow:
    user_id, state, status_msg, last_active_ts, currently_active, stream_id = r
    return PresenceRow(
        user_id=str(user_id),
        state=str(state),
        status_msg=None if status_msg is None else str(status_msg),
        last_active_ts=int(last_active_ts),  # type: ignore[call-overload]
        currently_active=bool(currently_active),
        stream_id=int(stream_id),  # type: ignore[call-overload]
    )


def _upsert(cursor: Cursor, row: PresenceRow, stream_id: int) -> None:
    cursor.execute(
        "INSERT INTO presence"
        " (user_id, state, status_msg, last_active_ts, currently_active, stream_id)"
        " VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET state = excluded.state,"
        " status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts,"
        " currently_active = excluded.currently_active, stream_id = excluded.stream_id",
        (
            row.user_id,
            row.state,
            row.status_msg,
            row.last_active_ts,
            row.currently_active,
            stream_id,
        ),
    )
