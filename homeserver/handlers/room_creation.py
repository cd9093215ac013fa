"""``POST /createRoom``: a new room's first events, checked together and persisted at once.

The order of the initial events, the presets and the default power levels follow the
spec's createRoom description and Synapse's choices where the spec is silent (the
``guest_access`` event of the private presets, ``historical`` in the power levels...).
The invites of local users in ``invite`` are part of the same batch, so a room is created
whole or not at all. Users of other servers are invited afterwards, one by one, through
the federation invite handshake (their server must countersign), as Synapse does. The
room exists by then, so an invite their server refuses or cannot be reached for is logged
and the room is still answered (the creator can invite again): Synapse answers with the
invite's error instead, which leaves the client without the ID of a room that exists.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.errors import MatrixError, bad_json, invalid_param
from homeserver.events.model import JsonDict, StateKey
from homeserver.handlers.directory import DirectoryHandler
from homeserver.handlers.event_creation import EventCreator, EventSpec
from homeserver.handlers.membership import (
    MEMBER,
    MembershipHandler,
    ProfileSource,
    federation_unavailable,
    parse_user_id,
)
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.types import Requester

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    join_rule: str
    history_visibility: str
    guest_can_join: bool
    original_invitees_have_ops: bool


PRESETS: Mapping[str, Preset] = {
    "private_chat": Preset("invite", "shared", True, False),
    "trusted_private_chat": Preset("invite", "shared", True, True),
    "public_chat": Preset("public", "shared", False, False),
}


def default_power_levels(room_version: RoomVersion, creator: str) -> JsonDict:
    infinite = room_version.creators_have_infinite_power
    return {
        # v12 creators outrank everyone without being listed (and must not be).
        "users": {} if infinite else {creator: 100},
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            # v12: only creators may replace the room.
            "m.room.tombstone": 150 if infinite else 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50,
        "historical": 100,
    }


@dataclass
class RoomRequest:
    """A checked ``/createRoom`` body."""

    room_version: RoomVersion
    preset: Preset
    is_public: bool
    alias: str | None
    name: str | None
    topic: str | None
    invites: list[str]
    is_direct: bool
    initial_state: dict[StateKey, JsonDict]
    creation_content: JsonDict
    power_level_override: JsonDict | None


class RoomCreationHandler:
    def __init__(
        self,
        *,
        server_name: str,
        event_creator: EventCreator,
        profiles: ProfileSource,
        directory: DirectoryHandler,
        default_room_version: str,
        membership: MembershipHandler | None = None,
    ) -> None:
        self.server_name = server_name
        self.creator = event_creator
        self.profiles = profiles
        self.directory = directory
        self.default_room_version = default_room_version
        # Invites users of other servers (through its ``federation``) once the room exists.
        self.membership = membership

    def _is_remote(self, user_id: str) -> bool:
        return user_id.split(":", 1)[1] != self.server_name

    async def create_room(self, requester: Requester, body: Mapping[str, Any]) -> JsonDict:
        """Create the room ``body`` describes; returns the response body."""
        request = await self.check_request(requester, body)
        specs = await self.initial_events(requester.user_id, request)
        room_id, _ = await self.create(request.room_version, requester.user_id, specs, request)
        for invitee in request.invites:
            if self._is_remote(invitee):
                await self._invite_remote(requester, room_id, invitee, request.is_direct)
        result: JsonDict = {"room_id": room_id}
        if request.alias is not None:
            await self.directory.create_alias_for_new_room(
                request.alias, room_id, requester.user_id
            )
            result["room_alias"] = request.alias
        return result

    async def _invite_remote(
        self, requester: Requester, room_id: str, invitee: str, is_direct: bool
    ) -> None:
        assert self.membership is not None
        try:
            await self.membership.update_membership(
                requester,
                invitee,
                room_id,
                "invite",
                content={"is_direct": True} if is_direct else None,
            )
        except MatrixError as e:
            logger.warning("new room %s: inviting %s failed: %s", room_id, invitee, e)
        except Exception:
            # The room exists: an error answer would only hide its ID from the creator.
            logger.exception("new room %s: inviting %s failed", room_id, invitee)

    async def create(
        self,
        room_version: RoomVersion,
        user_id: str,
        specs: list[EventSpec],
        request: RoomRequest,
    ) -> tuple[str, list[Any]]:
        try:
            return await self.creator.create_room(
                room_version, user_id, specs, is_public=request.is_public
            )
        except MatrixError as e:
            if e.errcode == "M_FORBIDDEN":
                # The auth rules refused one of the initial events: the request asked
                # for a room state that cannot exist.
                raise MatrixError(400, "M_INVALID_ROOM_STATE", e.error) from None
            raise

    async def check_request(self, requester: Requester, body: Mapping[str, Any]) -> RoomRequest:
        """Every check that does not need the room, before anything is created."""
        user_id = requester.user_id
        version_id = body.get("room_version", self.default_room_version)
        if not isinstance(version_id, str):
            raise bad_json("room_version must be a string")
        room_version = KNOWN_ROOM_VERSIONS.get(version_id)
        if room_version is None:
            raise MatrixError(
                400,
                "M_UNSUPPORTED_ROOM_VERSION",
                f"This server does not support room version {version_id!r}",
            )

        visibility = body.get("visibility", "private")
        if visibility not in ("public", "private"):
            raise invalid_param("visibility must be 'public' or 'private'")
        preset_name = body.get(
            "preset", "private_chat" if visibility == "private" else "public_chat"
        )
        if not isinstance(preset_name, str) or preset_name not in PRESETS:
            raise bad_json(f"{preset_name!r} is not a valid preset")

        name = _optional_str(body, "name")
        topic = _optional_str(body, "topic")
        is_direct = body.get("is_direct", False)
        if not isinstance(is_direct, bool):
            raise bad_json("is_direct must be a boolean")

        invites_value = body.get("invite", [])
        if not isinstance(invites_value, list):
            raise bad_json("invite must be a list of user IDs")
        invites = list(dict.fromkeys(parse_user_id(i, "invite") for i in invites_value))
        remote = self.membership is not None and self.membership.federation is not None
        if not remote and any(self._is_remote(invitee) for invitee in invites):
            raise federation_unavailable("Inviting a user of another server")
        invite_3pid = body.get("invite_3pid", [])
        if not isinstance(invite_3pid, list):
            raise bad_json("invite_3pid must be a list")
        if invite_3pid:
            raise MatrixError(
                400, "M_UNRECOGNIZED", "Third-party invites are not supported by this server"
            )

        initial_state: dict[StateKey, JsonDict] = {}
        raw_state = body.get("initial_state", [])
        if not isinstance(raw_state, list):
            raise bad_json("initial_state must be a list of state events")
        for entry in raw_state:
            if not isinstance(entry, dict):
                raise bad_json("initial_state entries must be objects")
            event_type = entry.get("type")
            state_key = entry.get("state_key", "")
            content = entry.get("content")
            if not isinstance(event_type, str) or not event_type:
                raise bad_json("initial_state entries need a string type")
            if not isinstance(state_key, str):
                raise bad_json("initial_state state_key must be a string")
            if not isinstance(content, dict):
                raise bad_json("initial_state entries need an object content")
            if event_type == "m.room.create":
                raise bad_json("initial_state cannot contain m.room.create; use creation_content")
            initial_state[(event_type, state_key)] = content

        creation_content = body.get("creation_content", {})
        if not isinstance(creation_content, dict):
            raise bad_json("creation_content must be an object")
        creation_content = copy.deepcopy(creation_content)
        # The version is the request's, whatever creation_content says.
        creation_content["room_version"] = room_version.identifier
        if room_version.creators_have_infinite_power:
            additional = creation_content.get("additional_creators")
            if additional is not None:
                if not isinstance(additional, list):
                    raise bad_json("additional_creators must be a list of user IDs")
                for creator in additional:
                    parse_user_id(creator, "additional_creators")
            if preset_name == "trusted_private_chat" and invites:
                # v12 has no "100 for the invitees": they become creators instead.
                creation_content["additional_creators"] = list(
                    dict.fromkeys([*(additional or []), *invites])
                )

        override = body.get("power_level_content_override")
        if override is not None:
            if not isinstance(override, dict):
                raise bad_json("power_level_content_override must be an object")
            users = override.get("users")
            if (
                not room_version.creators_have_infinite_power
                and isinstance(users, dict)
                and user_id not in users
            ):
                raise invalid_param(
                    f"Not a valid power_level_content_override: 'users' did not contain {user_id}"
                )

        alias = None
        if "room_alias_name" in body:
            alias = await self.directory.check_new_room_alias(body["room_alias_name"])

        return RoomRequest(
            room_version=room_version,
            preset=PRESETS[preset_name],
            is_public=visibility == "public",
            alias=alias,
            name=name,
            topic=topic,
            invites=invites,
            is_direct=is_direct,
            initial_state=initial_state,
            creation_content=creation_content,
            power_level_override=override,
        )

    async def initial_events(self, user_id: str, request: RoomRequest) -> list[EventSpec]:
        room_version = request.room_version
        preset = request.preset
        state = dict(request.initial_state)

        creation_content = dict(request.creation_content)
        if not room_version.implicit_room_creator:
            creation_content["creator"] = user_id
        specs = [EventSpec("m.room.create", user_id, creation_content, "")]

        join: JsonDict = {"membership": "join"}
        profile = await self.profiles.get_profile(user_id) or {}
        for key in ("displayname", "avatar_url"):
            if isinstance(profile.get(key), str):
                join[key] = profile[key]
        specs.append(EventSpec(MEMBER, user_id, join, user_id))

        power_levels = state.pop(("m.room.power_levels", ""), None)
        if power_levels is None:
            power_levels = default_power_levels(room_version, user_id)
            if preset.original_invitees_have_ops and not room_version.creators_have_infinite_power:
                for invitee in request.invites:
                    power_levels["users"][invitee] = 100
            if request.power_level_override:
                power_levels.update(copy.deepcopy(request.power_level_override))
        specs.append(EventSpec("m.room.power_levels", user_id, power_levels, ""))

        if request.alias is not None and ("m.room.canonical_alias", "") not in state:
            specs.append(EventSpec("m.room.canonical_alias", user_id, {"alias": request.alias}, ""))
        if ("m.room.join_rules", "") not in state:
            specs.append(
                EventSpec("m.room.join_rules", user_id, {"join_rule": preset.join_rule}, "")
            )
        if ("m.room.history_visibility", "") not in state:
            specs.append(
                EventSpec(
                    "m.room.history_visibility",
                    user_id,
                    {"history_visibility": preset.history_visibility},
                    "",
                )
            )
        if preset.guest_can_join and ("m.room.guest_access", "") not in state:
            specs.append(
                EventSpec("m.room.guest_access", user_id, {"guest_access": "can_join"}, "")
            )
        for (event_type, state_key), content in state.items():
            specs.append(EventSpec(event_type, user_id, content, state_key))
        if request.name is not None:
            specs.append(EventSpec("m.room.name", user_id, {"name": request.name}, ""))
        if request.topic is not None:
            topic_content = {
                "topic": request.topic,
                "m.topic": {"m.text": [{"body": request.topic}]},
            }
            specs.append(EventSpec("m.room.topic", user_id, topic_content, ""))
        for invitee in request.invites:
            if self._is_remote(invitee):
                continue  # their server countersigns: invited once the room exists
            invite: JsonDict = {"membership": "invite"}
            if request.is_direct:
                invite["is_direct"] = True
            invitee_profile = await self.profiles.get_profile(invitee) or {}
            for key in ("displayname", "avatar_url"):
                if isinstance(invitee_profile.get(key), str):
                    invite[key] = invitee_profile[key]
            specs.append(EventSpec(MEMBER, user_id, invite, invitee))
        return specs


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_json(f"{key} must be a string")
    return value
