"""Ignored users: the global account data ``m.ignored_user_list``.

/sync, /messages and friends hide the non-state events of the users a user ignores
(spec, "Ignoring Users"); they ask ``IgnoredUsers.get_ignored_users``.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import bad_json
from homeserver.types import UserID
from storage.account_data import GLOBAL, AccountDataStore

IGNORED_USER_LIST = "m.ignored_user_list"


def validate_ignored_user_list(content: dict[str, Any]) -> None:
    """400 M_BAD_JSON unless ``content`` is ``{"ignored_users": {<user ID>: {}, ...}}``."""
    ignored = content.get("ignored_users")
    if not isinstance(ignored, dict):
        raise bad_json("m.ignored_user_list must have an 'ignored_users' object")
    for user_id, value in ignored.items():
        try:
            UserID.parse(user_id)
        except ValueError:
            raise bad_json(f"{user_id!r} in ignored_users is not a user ID") from None
        if not isinstance(value, dict):
            raise bad_json(f"ignored_users[{user_id!r}] must be an object")


def ignored_from_content(user_id: str, content: dict[str, Any] | None) -> frozenset[str]:
    ignored = content.get("ignored_users") if content is not None else None
    if not isinstance(ignored, dict):
        return frozenset()
    # Ignoring oneself would hide one's own messages; it means nothing.
    return frozenset(u for u in ignored if isinstance(u, str) and u != user_id)


class IgnoredUsers:
    def __init__(self, store: AccountDataStore) -> None:
        self._store = store

    async def get_ignored_users(self, user_id: str) -> frozenset[str]:
        """The users ``user_id`` ignores (cached by the account data store; a write to
        m.ignored_user_list is seen by the next call)."""
        return ignored_from_content(
            user_id, await self._store.get(user_id, GLOBAL, IGNORED_USER_LIST)
        )
