"""Profiles: display name, avatar URL and the other profile fields of local users."""

from __future__ import annotations

import json
from typing import Any

from storage.engine import Cursor, Database

# The fields with their own columns; every other field lives in the JSON ``fields`` column.
DISPLAYNAME = "displayname"
AVATAR_URL = "avatar_url"


def create_profile_txn(cursor: Cursor, user_id: str, displayname: str | None) -> None:
    cursor.execute(
        "INSERT INTO profiles (user_id, displayname) VALUES (?, ?)"
        " ON CONFLICT (user_id) DO NOTHING",
        (user_id, displayname),
    )


def clear_profile_txn(cursor: Cursor, user_id: str) -> None:
    cursor.execute(
        "UPDATE profiles SET displayname = NULL, avatar_url = NULL, fields = '{}'"
        " WHERE user_id = ?",
        (user_id,),
    )


def _read_txn(cursor: Cursor, user_id: str) -> dict[str, Any] | None:
    cursor.execute(
        "SELECT displayname, avatar_url, fields FROM profiles WHERE user_id = ?", (user_id,)
    )
    row = cursor.fetchone()
    if row is None:
        return None
    profile: dict[str, Any] = json.loads(row[2])
    if row[0] is not None:
        profile[DISPLAYNAME] = row[0]
    if row[1] is not None:
        profile[AVATAR_URL] = row[1]
    return profile


class ProfileStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def get_profile(self, user_id: str) -> dict[str, Any] | None:
        """Every field of the user's profile; None if the user has no profile (no account)."""
        return await self._db.run_interaction("get_profile", _read_txn, user_id)

    async def set_field(
        self, user_id: str, key: str, value: Any, *, delete: bool = False, max_bytes: int
    ) -> dict[str, Any] | None:
        """Set (or delete) one field; the profile before the change, None if there is none.

        Raises ``ProfileTooLarge`` if the whole profile would exceed ``max_bytes`` as JSON.
        """

        def update(cursor: Cursor) -> dict[str, Any] | None:
            before = _read_txn(cursor, user_id)
            if before is None:
                return None
            after = dict(before)
            if delete:
                after.pop(key, None)
            else:
                after[key] = value
            if len(json.dumps(after, ensure_ascii=False).encode("utf-8")) > max_bytes:
                raise ProfileTooLarge()
            others = {k: v for k, v in after.items() if k not in (DISPLAYNAME, AVATAR_URL)}
            cursor.execute(
                "UPDATE profiles SET displayname = ?, avatar_url = ?, fields = ? WHERE user_id = ?",
                (
                    after.get(DISPLAYNAME),
                    after.get(AVATAR_URL),
                    json.dumps(others, ensure_ascii=False),
                    user_id,
                ),
            )
            return before

        return await self._db.run_interaction("set_profile_field", update)


class ProfileTooLarge(Exception):
    """The profile would be over its size limit."""
