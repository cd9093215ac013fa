"""Auth events selection (server-server-api "Auth events selection").

Which pieces of room state give a sender permission to send an event. The same list
serves three purposes: picking the ``auth_events`` of a new event, checking the
``auth_events`` of a received one (``rules.check_auth_events_shape``), and picking the
state that ``rules.check_auth_rules`` needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.auth.power_levels import CREATE_KEY, JOIN_RULES_KEY, POWER_LEVELS_KEY
from homeserver.events.model import StateKey
from homeserver.room_versions import RoomVersion


def _auth_types_in_order(
    room_version: RoomVersion,
    event_type: str,
    sender: str,
    state_key: str | None,
    content: Mapping[str, Any],
) -> list[StateKey]:
    if event_type == "m.room.create":
        return []
    types: list[StateKey] = [CREATE_KEY, POWER_LEVELS_KEY, ("m.room.member", sender)]
    if event_type == "m.room.member":
        membership = content.get("membership")
        if state_key is not None:
            types.append(("m.room.member", state_key))
        if membership in ("join", "invite", "knock"):
            types.append(JOIN_RULES_KEY)
        if membership == "invite":
            token = _third_party_invite_token(content)
            if token is not None:
                types.append(("m.room.third_party_invite", token))
        if membership == "join" and room_version.restricted_join_rule:
            authoriser = content.get("join_authorised_via_users_server")
            if isinstance(authoriser, str):
                types.append(("m.room.member", authoriser))
    # The sender may also be the target or the authoriser: keep the first of each.
    return list(dict.fromkeys(types))


def _third_party_invite_token(content: Mapping[str, Any]) -> str | None:
    third_party_invite = content.get("third_party_invite")
    if not isinstance(third_party_invite, Mapping):
        return None
    signed = third_party_invite.get("signed")
    if not isinstance(signed, Mapping):
        return None
    token = signed.get("token")
    return token if isinstance(token, str) else None


def auth_types_for_event(
    room_version: RoomVersion,
    event_type: str,
    sender: str,
    state_key: str | None,
    content: Mapping[str, Any],
) -> set[StateKey]:
    """The (type, state_key) pairs of the state an event is authorised against.

    Always includes ``m.room.create`` (except for the create event itself, which has
    none), in every room version: ``check_auth_rules`` needs it. In v12 the create
    event is not *listed* in ``auth_events``; ``select_auth_events`` and
    ``check_auth_events_shape`` leave it out there.
    """
    return set(_auth_types_in_order(room_version, event_type, sender, state_key, content))


def select_auth_events(
    room_version: RoomVersion,
    event_type: str,
    sender: str,
    state_key: str | None,
    content: Mapping[str, Any],
    current_state: Mapping[StateKey, str],
) -> list[str]:
    """The ``auth_events`` IDs of a new event, taken from the room's current state
    ((type, state_key) -> event ID). v12 leaves the create event out: the room ID
    names it. The order is stable: create, power levels, sender, then the rest."""
    selected: list[str] = []
    for key in _auth_types_in_order(room_version, event_type, sender, state_key, content):
        if key == CREATE_KEY and room_version.room_id_is_create_event_hash:
            continue
        event_id = current_state.get(key)
        if event_id is not None and event_id not in selected:
            selected.append(event_id)
    return selected
