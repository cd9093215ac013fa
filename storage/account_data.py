"""Account data, global and per room (room tags are the per-room type ``m.tag``).

Every write takes the next position of the account data stream, so /sync can ask for
what changed after the position it last saw.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from homeserver.util.caches import LruCache
from storage.engine import Cursor, Database
from storage.stream_ids import StreamIdGenerator

JsonDict = dict[str, Any]

# room_id of global account data in the table.
GLOBAL = ""


class AccountDataStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.stream_ids = StreamIdGenerator(0)
        # (user_id, type) -> content; global data is read on every /sync (ignored users).
        self._global: LruCache[tuple[str, str], JsonDict | None] = LruCache(50_000)
        # Bumped by every write, so a read that raced a write does not cache what it read.
        self._writes = 0

    async def load_positions(self) -> None:
        rows = await self.db.execute(
            "load_account_data_position", "SELECT COALESCE(MAX(stream_id), 0) FROM account_data"
        )
        self.stream_ids = StreamIdGenerator(int(rows[0][0]))

    def current_position(self) -> int:
        return self.stream_ids.current_token()

    async def get(self, user_id: str, room_id: str, data_type: str) -> JsonDict | None:
        """The content stored for (user, room or GLOBAL, type), or None."""
        key = (user_id, data_type)
        if room_id == GLOBAL and key in self._global:
            return self._global.get(key)
        writes = self._writes
        rows = await self.db.execute(
            "get_account_data",
            "SELECT content FROM account_data"
            " WHERE user_id = ? AND room_id = ? AND account_data_type = ?",
            user_id,
            room_id,
            data_type,
        )
        content: JsonDict | None = json.loads(rows[0][0]) if rows else None
        if room_id == GLOBAL and writes == self._writes:
            self._global.set(key, content)
        return content

    async def put(self, user_id: str, room_id: str, data_type: str, content: JsonDict) -> int:
        """Store ``content``; the stream position of the change."""
        encoded = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
        (stream_id,) = self.stream_ids.allocate()
        self._writes += 1
        try:
            await self.db.run_interaction(
                "put_account_data", _upsert, user_id, room_id, data_type, encoded, stream_id
            )
        finally:
            self.stream_ids.finished([stream_id])
            self._writes += 1
        if room_id == GLOBAL:
            self._global.set((user_id, data_type), content)
        return stream_id

    async def update(
        self,
        user_id: str,
        room_id: str,
        data_type: str,
        change: Callable[[JsonDict | None], JsonDict | None],
    ) -> int | None:
        """Read-modify-write in one transaction: ``change(old content)`` returns the new
        content, or None to leave it as it is. The caller serialises writers of the key
        (two transactions reading the same old content would lose one change)."""
        (stream_id,) = self.stream_ids.allocate()
        self._writes += 1
        try:
            content: JsonDict | None = await self.db.run_interaction(
                "update_account_data", _update, user_id, room_id, data_type, change, stream_id
            )
        finally:
            self.stream_ids.finished([stream_id])
            self._writes += 1
        if content is None:
            return None
        if room_id == GLOBAL:
            self._global.set((user_id, data_type), content)
        return stream_id

    async def get_global_changes(self, user_id: str, since: int | None) -> dict[str, JsonDict]:
        """Global account data changed after ``since`` (all of it when None)."""
        rows = await self.db.execute(
            "get_global_account_data",
            "SELECT account_data_type, content FROM account_data"
            " WHERE user_id = ? AND room_id = '' AND stream_id > ?",
            user_id,
            since or 0,
        )
        return {data_type: json.loads(content) for data_type, content in rows}

    async def get_room_changes(
        self, user_id: str, since: int | None
    ) -> dict[str, dict[str, JsonDict]]:
        """Per-room account data changed after ``since`` (all of it when None)."""
        rows = await self.db.execute(
            "get_room_account_data",
            "SELECT room_id, account_data_type, content FROM account_data"
            " WHERE user_id = ? AND room_id <> '' AND stream_id > ?",
            user_id,
            since or 0,
        )
        result: dict[str, dict[str, JsonDict]] = {}
        for room_id, data_type, content in rows:
            result.setdefault(room_id, {})[data_type] = json.loads(content)
        return result


def _upsert(
    cursor: Cursor, user_id: str, room_id: str, data_type: str, encoded: str, stream_id: int
) -> None:
    cursor.execute(
        "INSERT INTO account_data (user_id, room_id, account_data_type, content, stream_id)"
        " VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (user_id, room_id, account_data_type)"
        " DO UPDATE SET content = excluded.content, stream_id = excluded.stream_id",
        (user_id, room_id, data_type, encoded, stream_id),
    )


def _update(
    cursor: Cursor,
    user_id: str,
    room_id: str,
    data_type: str,
    change: Callable[[JsonDict | None], JsonDict | None],
    stream_id: int,
) -> JsonDict | None:
    cursor.execute(
        "SELECT content FROM account_data"
        " WHERE user_id = ? AND room_id = ? AND account_data_type = ?",
        (user_id, room_id, data_type),
    )
    row = cursor.fetchone()
    old: JsonDict | None = json.loads(row[0]) if row else None
    new = change(old)
    if new is None:
        return None
    encoded = json.dumps(new, separators=(",", ":"), ensure_ascii=False)
    _upsert(cursor, user_id, room_id, data_type, encoded, stream_id)
    return new
