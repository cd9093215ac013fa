"""Client filters: stored per user, numbered from 0, identical uploads sharing one ID."""

from __future__ import annotations

import json
from typing import Any

from homeserver.events.canonical_json import encode_canonical_json
from homeserver.util.caches import LruCache
from homeserver.util.linearizer import Linearizer
from storage.engine import Cursor, Database


class FilterStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Filters never change once stored, so cached entries never go stale.
        self._user_locks = Linearizer()
        self._cache: LruCache[tuple[str, int], dict[str, Any]] = LruCache(10_000)

    async def add_filter(self, user_id: str, filter_json: dict[str, Any]) -> int:
        """Store a filter for ``user_id``; its ID (an earlier ID if identical)."""
        encoded = encode_canonical_json(filter_json).decode("utf-8")
        # One upload per user at a time, so two never take the same next ID.
        async with self._user_locks.lock(user_id):
            return await self.db.run_interaction("add_user_filter", _add_filter, user_id, encoded)

    async def get_filter(self, user_id: str, filter_id: int) -> dict[str, Any] | None:
        cached = self._cache.get((user_id, filter_id))
        if cached is not None:
            return cached
        rows = await self.db.execute(
            "get_user_filter",
            "SELECT filter_json FROM user_filters WHERE user_id = ? AND filter_id = ?",
            user_id,
            filter_id,
        )
        if not rows:
            return None
        value: dict[str, Any] = json.loads(rows[0][0])
        self._cache.set((user_id, filter_id), value)
        return value


def _add_filter(cursor: Cursor, user_id: str, encoded: str) -> int:
    cursor.execute(
        "SELECT filter_id FROM user_filters WHERE user_id = ? AND filter_json = ?",
        (user_id, encoded),
    )
    row = cursor.fetchone()
    if row is not None:
        return int(row[0])
    cursor.execute(
        "SELECT COALESCE(MAX(filter_id), -1) + 1 FROM user_filters WHERE user_id = ?", (user_id,)
    )
    next_row = cursor.fetchone()
    filter_id = int(next_row[0]) if next_row else 0
    cursor.execute(
        "INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES (?, ?, ?)",
        (user_id, filter_id, encoded),
    )
    return filter_id
