"""``POST /rooms/{roomId}/upgrade``: replace a room by a new one of another version.

As Synapse: the new room gets the old one's important state (power levels, join rules,
name, topic, avatar, encryption, history visibility, guest access, server ACLs, space
children), its bans and its aliases; the old room gets a tombstone pointing at the new
one and power levels that stop ordinary members from talking or inviting.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

from homeserver.auth.power_levels import (
    get_required_power_level,
    get_user_power_level,
    parse_power_level,
)
from homeserver.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.events.model import Event, JsonDict, StateKey
from homeserver.handlers.directory import DirectoryHandler
from homeserver.handlers.event_creation import EventCreator, EventSpec
from homeserver.handlers.membership import MEMBER, parse_user_id
from homeserver.handlers.room_creation import PRESETS, RoomCreationHandler, RoomRequest
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.types import Requester
from storage.directory import DirectoryStore
from storage.events import EventStore
from storage.room_members import RoomMemberStore

logger = logging.getLogger(__name__)

_COPIED_STATE = (
    "m.room.join_rules",
    "m.room.name",
    "m.room.topic",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
    "m.room.power_levels",
)


def _level(value: Any, room_version: RoomVersion, default: int) -> int:
    level = parse_power_level(value, room_version)
    return default if level is None else level


class RoomUpgradeHandler:
    def __init__(
        self,
        *,
        event_store: EventStore,
        member_store: RoomMemberStore,
        event_creator: EventCreator,
        room_creation: RoomCreationHandler,
        directory: DirectoryHandler,
        directory_store: DirectoryStore,
    ) -> None:
        self.store = event_store
        self.members = member_store
        self.creator = event_creator
        self.room_creation = room_creation
        self.directory = directory
        self.directory_store = directory_store

    async def upgrade(self, requester: Requester, room_id: str, body: Mapping[str, Any]) -> str:
        user_id = requester.user_id
        version_id = body.get("new_version")
        if not isinstance(version_id, str):
            raise bad_json("new_version must be a string")
        new_version = KNOWN_ROOM_VERSIONS.get(version_id)
        if new_version is None:
            raise MatrixError(
                400,
                "M_UNSUPPORTED_ROOM_VERSION",
                f"This server does not support room version {version_id!r}",
            )
        additional = body.get("additional_creators")
        if additional is not None:
            if not isinstance(additional, list):
                raise bad_json("additional_creators must be a list of user IDs")
            additional = [parse_user_id(u, "additional_creators") for u in additional]

        head = await self.store.get_room_head(room_id)
        if head is None:
            raise not_found(f"Unknown room {room_id}")
        old_state = head.state
        wanted = {key: event_id for key, event_id in old_state.items() if self._wanted(key)}
        wanted[("m.room.create", "")] = old_state[("m.room.create", "")]
        if (MEMBER, user_id) in old_state:
            wanted[(MEMBER, user_id)] = old_state[(MEMBER, user_id)]
        fetched = await self.store.get_events(wanted.values())
        state = {key: fetched[e] for key, e in wanted.items() if e in fetched}
        member = state.get((MEMBER, user_id))
        if member is None or member.membership != "join":
            raise forbidden(f"User {user_id} is not in room {room_id}")
        old_version = head.room_version
        required = get_required_power_level("m.room.tombstone", True, state, old_version)
        if get_user_power_level(user_id, state, old_version) < required:
            raise forbidden("You don't have permission to upgrade the room")

        old_create = state[("m.room.create", "")]
        creation_content: JsonDict = {
            "room_version": new_version.identifier,
            "predecessor": {"room_id": room_id, "event_id": head.forward_extremities[-1]},
        }
        for key in ("type", "m.federate"):
            if key in old_create.content:
                creation_content[key] = copy.deepcopy(old_create.content[key])
        if new_version.creators_have_infinite_power and additional:
            creation_content["additional_creators"] = additional

        initial_state: dict[StateKey, JsonDict] = {}
        for state_key, event in state.items():
            kind = state_key[0]
            if kind in _COPIED_STATE or (kind == "m.space.child" and event.content):
                initial_state[state_key] = copy.deepcopy(event.content)
        final_power_levels = self._new_room_power_levels(
            initial_state.get(("m.room.power_levels", "")), new_version, user_id, additional
        )
        # The upgrader needs enough power to send all the copied state; their real level
        # is restored by a second power levels event once the copy is done.
        initial_state[("m.room.power_levels", "")] = self._creation_power_levels(
            final_power_levels, new_version, user_id
        )

        request = RoomRequest(
            room_version=new_version,
            preset=PRESETS["private_chat"],
            is_public=False,
            alias=None,
            name=None,
            topic=None,
            invites=[],
            is_direct=False,
            initial_state=initial_state,
            creation_content=creation_content,
            power_level_override=None,
        )
        specs = await self.room_creation.initial_events(user_id, request)
        bans = await self.members.get_current_members(room_id, ["ban"])
        ban_events = await self.store.get_events([row.event_id for row in bans])
        for row in bans:
            ban = ban_events.get(row.event_id)
            if ban is not None:
                specs.append(EventSpec(MEMBER, user_id, dict(ban.content), row.user_id))
        if final_power_levels != initial_state[("m.room.power_levels", "")]:
            specs.append(EventSpec("m.room.power_levels", user_id, final_power_levels, ""))
        new_room_id, _ = await self.room_creation.create(new_version, user_id, specs, request)

        await self.creator.send(
            room_id,
            EventSpec(
                "m.room.tombstone",
                user_id,
                {"body": "This room has been replaced", "replacement_room": new_room_id},
                "",
            ),
        )
        await self._restrict_old_room(requester, room_id, state.get(("m.room.power_levels", "")))
        await self._move_aliases(user_id, room_id, new_room_id)
        if await self.directory_store.get_room_is_public(room_id):
            await self.directory_store.set_room_is_public(new_room_id, True)
            await self.directory_store.set_room_is_public(room_id, False)
        return new_room_id

    @staticmethod
    def _wanted(key: StateKey) -> bool:
        return key[0] in _COPIED_STATE or key[0] == "m.space.child"

    @staticmethod
    def _new_room_power_levels(
        old: JsonDict | None,
        room_version: RoomVersion,
        user_id: str,
        additional: list[str] | None,
    ) -> JsonDict:
        content = copy.deepcopy(old) if old is not None else {}
        if room_version.enforce_int_power_levels:
            # Old rooms may hold "50"-style levels the new version refuses.
            content = _int_levels(content)
        users = content.get("users")
        if room_version.creators_have_infinite_power and isinstance(users, dict):
            for creator in [user_id, *(additional or [])]:
                users.pop(creator, None)
        return content

    @staticmethod
    def _creation_power_levels(
        final: JsonDict, room_version: RoomVersion, user_id: str
    ) -> JsonDict:
        if room_version.creators_have_infinite_power:
            return final
        content = copy.deepcopy(final)
        events = content.get("events")
        values = events.values() if isinstance(events, dict) else []
        event_levels = [_level(v, room_version, 0) for v in values]
        needed = max(
            _level(content.get("state_default", 50), room_version, 50),
            _level(content.get("ban", 50), room_version, 50),
            *event_levels,
        )
        users = content.setdefault("users", {})
        if not isinstance(users, dict):
            users = content["users"] = {}
        current = _level(users.get(user_id, content.get("users_default", 0)), room_version, 0)
        if current < needed:
            users[user_id] = needed
        return content

    async def _restrict_old_room(
        self, requester: Requester, room_id: str, power_levels: Event | None
    ) -> None:
        if power_levels is None:
            return
        room_version = power_levels.room_version
        content = copy.deepcopy(power_levels.content)
        restricted = max(_level(content.get("users_default", 0), room_version, 0) + 1, 50)
        changed = False
        for key in ("invite", "events_default"):
            if _level(content.get(key, 0), room_version, 0) < restricted:
                content[key] = restricted
                changed = True
        if not changed:
            return
        try:
            await self.creator.send(
                room_id, EventSpec("m.room.power_levels", requester.user_id, content, "")
            )
        except MatrixError as e:
            logger.warning("could not restrict power levels in upgraded room %s: %s", room_id, e)

    async def _move_aliases(self, user_id: str, old_room_id: str, new_room_id: str) -> None:
        aliases = await self.directory_store.get_aliases_for_room(old_room_id)
        for alias in aliases:
            record = await self.directory_store.get_alias(alias)
            await self.directory_store.delete_alias(alias)
            creator = record.creator if record is not None else user_id
            await self.directory_store.create_alias(alias, new_room_id, creator)
        canonical = await self.store.get_current_state_event(old_room_id, "m.room.canonical_alias")
        if canonical is None or not canonical.content:
            return
        content = copy.deepcopy(canonical.content)
        for room, event_content in ((new_room_id, content), (old_room_id, {})):
            try:
                await self.creator.send(
                    room, EventSpec("m.room.canonical_alias", user_id, event_content, "")
                )
            except MatrixError as e:
                logger.warning("could not move the canonical alias to %s: %s", room, e)


_LEVEL_KEYS = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "kick",
    "redact",
    "invite",
    "historical",
)


def _int_levels(content: JsonDict) -> JsonDict:
    """Power levels with every value an integer, read as the lenient old versions read them."""
    lenient = KNOWN_ROOM_VERSIONS["1"]
    result = dict(content)
    for key in ("users", "events", "notifications"):
        value = content.get(key)
        if isinstance(value, dict):
            result[key] = {
                k: level
                for k, v in value.items()
                if (level := parse_power_level(v, lenient)) is not None
            }
    for key in _LEVEL_KEYS:
        if key in content:
            level = parse_power_level(content[key], lenient)
            if level is None:
                del result[key]
            else:
                result[key] = level
    return result
