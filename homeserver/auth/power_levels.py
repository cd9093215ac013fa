"""Power levels as the authorisation rules and state resolution read them.

Spec: server-server-api "Definitions" (required power level, invite/kick/ban/redact
level), client-server-api ``m.room.power_levels``, and per room version:
``v1-stringy-power-levels`` / ``v1-floaty-power-levels`` (v1-v9 accept "50" and, where
canonical JSON is lenient, 50.7), v10 integers only, v12 creators of infinite power.

Lookups here are lenient: a value that is not a valid level for the room version is
treated as absent, so the default applies. The rules that validate a *new*
``m.room.power_levels`` event are strict and live in ``rules.py``; they keep invalid
``users`` values out of the room state in every version and all invalid values out
from v10 on, so leniency only ever meets v1-v9 leftovers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from homeserver.events.model import Event, StateKey
from homeserver.events.validation import is_valid_user_id
from homeserver.room_versions import RoomVersion

CREATE_KEY: Final[StateKey] = ("m.room.create", "")
POWER_LEVELS_KEY: Final[StateKey] = ("m.room.power_levels", "")
JOIN_RULES_KEY: Final[StateKey] = ("m.room.join_rules", "")

CREATOR_POWER_LEVEL: Final = 2**53
"""The power level of a v12 room creator: "infinitely high". Canonical JSON caps
integers at 2**53 - 1 from v6 on, so no level written in a v12 event can reach it."""

NO_POWER_LEVELS_CREATOR_LEVEL: Final = 100
"""v1-v11: the creator's level while the room has no ``m.room.power_levels`` event."""

# Defaults from server-server-api "Definitions" and the m.room.power_levels schema.
DEFAULT_LEVELS: Final[Mapping[str, int]] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
}

# v1-v9 "stringy" levels: optional surrounding whitespace, optional sign, ASCII digits.
_STRINGY_LEVEL_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)


def parse_power_level(value: Any, room_version: RoomVersion) -> int | None:
    """The integer a power level value stands for, or None if it is not a valid level."""
    if room_version.enforce_int_power_levels:
        # bool is a subclass of int, but JSON true is not an integer.
        return value if type(value) is int else None
    if isinstance(value, bool):
        # Before v10 Synapse reads true/false as 1/0; the spec is silent.
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return math.trunc(value)
    if isinstance(value, str):
        stripped = value.strip()
        if _STRINGY_LEVEL_RE.fullmatch(stripped) is None:
            return None
        return int(stripped)
    return None


def get_creators(create_event: Event | None, room_version: RoomVersion) -> frozenset[str]:
    """The room's creators: ``content.creator`` (v1-v10), the create event's sender
    (v11+), plus the valid entries of ``content.additional_creators`` (v12)."""
    if create_event is None:
        return frozenset()
    if not room_version.implicit_room_creator:
        creator = create_event.content.get("creator")
        return frozenset((creator,)) if isinstance(creator, str) else frozenset()
    creators = {create_event.sender}
    if room_version.creators_have_infinite_power:
        additional = create_event.content.get("additional_creators")
        if isinstance(additional, list):
            creators.update(
                user_id
                for user_id in additional
                if isinstance(user_id, str) and is_valid_user_id(user_id)
            )
    return frozenset(creators)


def _power_levels_content(auth_events: Mapping[StateKey, Event]) -> Mapping[str, Any] | None:
    event = auth_events.get(POWER_LEVELS_KEY)
    return None if event is None else event.content


def get_user_power_level(
    user_id: str, auth_events: Mapping[StateKey, Event], room_version: RoomVersion
) -> int:
    """A user's power level given the room state in ``auth_events``.

    ``auth_events`` needs the ``m.room.create`` event (whatever the room version: in
    v12 it names the creators) and the ``m.room.power_levels`` event if there is one.
    v12 creators get ``CREATOR_POWER_LEVEL`` whatever the power levels say.
    """
    create_event = auth_events.get(CREATE_KEY)
    if room_version.creators_have_infinite_power and user_id in get_creators(
        create_event, room_version
    ):
        return CREATOR_POWER_LEVEL
    content = _power_levels_content(auth_events)
    if content is None:
        if not room_version.creators_have_infinite_power and user_id in get_creators(
            create_event, room_version
        ):
            return NO_POWER_LEVELS_CREATOR_LEVEL
        return 0
    users = content.get("users")
    if isinstance(users, Mapping) and user_id in users:
        level = parse_power_level(users[user_id], room_version)
        if level is not None:
            return level
    return get_named_level("users_default", auth_events, room_version)


get_power_level = get_user_power_level


def get_named_level(
    name: str, auth_events: Mapping[StateKey, Event], room_version: RoomVersion
) -> int:
    """A top-level level (``invite``, ``kick``, ``ban``, ``redact``, ``users_default``,
    ``events_default``, ``state_default``) from the current power levels, or its default."""
    default = DEFAULT_LEVELS[name]
    content = _power_levels_content(auth_events)
    if content is None or name not in content:
        return default
    level = parse_power_level(content[name], room_version)
    return default if level is None else level


def get_required_power_level(
    event_type: str,
    is_state: bool,
    auth_events: Mapping[StateKey, Event],
    room_version: RoomVersion,
) -> int:
    """The event type's *required power level*: ``events[type]``, else ``state_default``
    for state events or ``events_default`` for the others."""
    content = _power_levels_content(auth_events)
    if content is not None:
        events = content.get("events")
        if isinstance(events, Mapping) and event_type in events:
            level = parse_power_level(events[event_type], room_version)
            if level is not None:
                return level
    return get_named_level(
        "state_default" if is_state else "events_default", auth_events, room_version
    )
