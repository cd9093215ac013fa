"""Account data (global and per room) and room tags, and what /sync reads of them.

Room tags are the per-room account data ``m.tag`` (``{"tags": {tag: {...}}}``), so a tag
change reaches /sync like any other room account data. The spec (v1.19) defines no way
to delete account data: a PUT of ``{}`` stores ``{}``, as Synapse does by default.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.handlers.ignored_users import IGNORED_USER_LIST, validate_ignored_user_list
from homeserver.notifier import Notifier
from homeserver.streams import StreamToken
from homeserver.types import Requester
from homeserver.util.linearizer import Linearizer
from storage.account_data import GLOBAL, AccountDataStore

JsonDict = dict[str, Any]

STREAM = "account_data"
TAG_TYPE = "m.tag"
FULLY_READ = "m.fully_read"
PUSH_RULES = "m.push_rules"
# Types only the server writes (spec, "Client Config", Server behaviour).
_SERVER_MANAGED = {
    FULLY_READ: "Cannot set m.fully_read through this API. Use /rooms/{roomId}/read_markers",
    PUSH_RULES: "Cannot set m.push_rules through this API. Use /pushrules",
}
MAX_TAG_BYTES = 255


def _check_self(requester: Requester, user_id: str, action: str) -> None:
    if user_id != requester.user_id:
        raise forbidden(f"Cannot {action} account data for other users.")


def _check_settable(data_type: str) -> None:
    reason = _SERVER_MANAGED.get(data_type)
    if reason is not None:
        raise MatrixError(405, "M_BAD_JSON", reason)


def _check_room_id(room_id: str) -> None:
    if not room_id.startswith("!") or len(room_id) < 2:
        raise invalid_param(f"{room_id} is not a valid room ID")


class AccountDataHandler:
    name = STREAM

    def __init__(self, *, store: AccountDataStore, notifier: Notifier) -> None:
        self.store = store
        self._notifier = notifier
        # Tag edits are read-modify-write of one m.tag object: one at a time per user.
        self._tag_locks = Linearizer()
        # Reads m.push_rules for GET /account_data/m.push_rules (the push rules module).
        self.push_rules_source: Callable[[str], Awaitable[JsonDict]] | None = None

    def current_position(self) -> int:
        return self.store.current_position()

    # --- the client API -----------------------------------------------------------------

    async def get_global(self, requester: Requester, user_id: str, data_type: str) -> JsonDict:
        _check_self(requester, user_id, "get")
        if data_type == PUSH_RULES and self.push_rules_source is not None:
            return await self.push_rules_source(user_id)
        content = await self.store.get(user_id, GLOBAL, data_type)
        if content is None:
            raise not_found("Account data not found")
        return content

    async def put_global(
        self, requester: Requester, user_id: str, data_type: str, content: JsonDict
    ) -> None:
        _check_self(requester, user_id, "add")
        _check_settable(data_type)
        if data_type == IGNORED_USER_LIST:
            validate_ignored_user_list(content)
        await self.set_global(user_id, data_type, content)

    async def get_room(
        self, requester: Requester, user_id: str, room_id: str, data_type: str
    ) -> JsonDict:
        _check_self(requester, user_id, "get")
        _check_room_id(room_id)
        if data_type == PUSH_RULES:
            return {}  # room-specific push rules do not exist (as Synapse)
        content = await self.store.get(user_id, room_id, data_type)
        if content is None:
            raise not_found("Room account data not found")
        return content

    async def put_room(
        self, requester: Requester, user_id: str, room_id: str, data_type: str, content: JsonDict
    ) -> None:
        _check_self(requester, user_id, "add")
        _check_room_id(room_id)
        _check_settable(data_type)
        if data_type == TAG_TYPE:
            _validate_tags(content)
            async with self._tag_locks.lock(user_id):
                await self.set_room(user_id, room_id, data_type, content)
            return
        await self.set_room(user_id, room_id, data_type, content)

    async def get_tags(self, requester: Requester, user_id: str, room_id: str) -> JsonDict:
        _check_self(requester, user_id, "get")
        _check_room_id(room_id)
        content = await self.store.get(user_id, room_id, TAG_TYPE)
        tags = content.get("tags") if content is not None else None
        return {"tags": tags if isinstance(tags, dict) else {}}

    async def put_tag(
        self, requester: Requester, user_id: str, room_id: str, tag: str, body: JsonDict
    ) -> None:
        _check_self(requester, user_id, "add")
        _check_room_id(room_id)
        _validate_tag_name(tag)
        _validate_tag_content(body)

        def change(old: JsonDict | None) -> JsonDict:
            tags = _tags_of(old)
            tags[tag] = body
            return {"tags": tags}

        async with self._tag_locks.lock(user_id):
            position = await self.store.update(user_id, room_id, TAG_TYPE, change)
        self._notify(user_id, position)

    async def delete_tag(self, requester: Requester, user_id: str, room_id: str, tag: str) -> None:
        _check_self(requester, user_id, "delete")
        _check_room_id(room_id)

        def change(old: JsonDict | None) -> JsonDict | None:
            tags = _tags_of(old)
            if tag not in tags:
                return None  # nothing to tell /sync about
            del tags[tag]
            return {"tags": tags}

        async with self._tag_locks.lock(user_id):
            position = await self.store.update(user_id, room_id, TAG_TYPE, change)
        self._notify(user_id, position)

    # --- for other handlers (no client checks) ------------------------------------------

    async def set_global(self, user_id: str, data_type: str, content: JsonDict) -> None:
        position = await self.store.put(user_id, GLOBAL, data_type, content)
        self._notify(user_id, position)

    async def set_room(self, user_id: str, room_id: str, data_type: str, content: JsonDict) -> None:
        position = await self.store.put(user_id, room_id, data_type, content)
        self._notify(user_id, position)

    async def get_room_data(self, user_id: str, room_id: str, data_type: str) -> JsonDict | None:
        return await self.store.get(user_id, room_id, data_type)

    def _notify(self, user_id: str, position: int | None) -> None:
        if position is not None:
            self._notifier.notify(STREAM, self.store.current_position(), users=[user_id])

    # --- for /sync ----------------------------------------------------------------------

    async def get_global_account_data(self, user_id: str, since: int | None) -> dict[str, JsonDict]:
        """Global account data changed after position ``since`` (all of it when None)."""
        return await self.store.get_global_changes(user_id, since)

    async def get_room_account_data(
        self, user_id: str, since: int | None
    ) -> dict[str, dict[str, JsonDict]]:
        """Per-room account data (m.tag and m.fully_read included) changed after ``since``
        (all of it when None): room_id -> type -> content."""
        return await self.store.get_room_changes(user_id, since)

    async def sync_global(self, user_id: str, since: StreamToken | None) -> list[JsonDict]:
        """SyncSections.global_account_data provider (events, not a mapping)."""
        position = dict(since.extra).get(STREAM, 0) if since is not None else None
        if position is not None and position >= self.current_position():
            return []  # nothing stored since the token: no need to ask the database
        changed = await self.get_global_account_data(user_id, position)
        return [{"type": t, "content": c} for t, c in changed.items() if t != PUSH_RULES]

    async def sync_rooms(
        self, user_id: str, since: StreamToken | None
    ) -> dict[str, list[JsonDict]]:
        """SyncSections.room_account_data provider."""
        position = dict(since.extra).get(STREAM, 0) if since is not None else None
        if position is not None and position >= self.current_position():
            return {}  # nothing stored since the token: no need to ask the database
        changed = await self.get_room_account_data(user_id, position)
        return {
            room_id: [{"type": t, "content": c} for t, c in by_type.items()]
            for room_id, by_type in changed.items()
        }


def _tags_of(content: JsonDict | None) -> JsonDict:
    tags = content.get("tags") if content is not None else None
    return dict(tags) if isinstance(tags, dict) else {}


def _validate_tag_name(tag: str) -> None:
    if not tag:
        raise invalid_param("The tag must not be empty")
    if len(tag.encode("utf-8")) > MAX_TAG_BYTES:
        raise invalid_param(f"Tags are at most {MAX_TAG_BYTES} bytes")


def _validate_tag_content(body: JsonDict) -> None:
    if "order" not in body:
        return
    order = body["order"]
    if (
        isinstance(order, bool)
        or not isinstance(order, (int, float))
        or not math.isfinite(order)
        or not 0 <= order <= 1
    ):
        raise bad_json("order must be a number between 0 and 1")


def _validate_tags(content: JsonDict) -> None:
    """An m.tag written directly as room account data must still read as tags."""
    tags = content.get("tags")
    if not isinstance(tags, dict):
        raise bad_json("m.tag content must have a 'tags' object")
    for tag, value in tags.items():
        _validate_tag_name(tag)
        if not isinstance(value, dict):
            raise bad_json(f"tag {tag!r} must map to an object")
        _validate_tag_content(value)
