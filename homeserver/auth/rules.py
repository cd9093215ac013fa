"""The authorisation rules of room versions 1-12 (rooms/vN.md "Authorisation rules").

Two entry points, matching the two halves of the rules:

* ``check_auth_events_shape(event, auth_events)``: the rules "considering the event's
  ``auth_events``", which look only at the events the PDU lists. Run once per received
  event.
* ``check_auth_rules(event, auth_events)``: everything else, against a piece of room
  state keyed by (type, state_key). Run against the event's own auth events, against
  the state before it, against the current state (soft failure), and by state
  resolution.

Both raise ``AuthError`` whose ``reason`` names the rule that failed. Differences
between room versions are read from the ``RoomVersion`` flags.

Not checked here: the signatures themselves (``events.signing`` verifies them before
authorisation; the rule about ``join_authorised_via_users_server`` only looks at
*which* servers signed, so the event must carry its signatures when it is checked),
and the per-event format checks (``events.validation``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from homeserver.auth.errors import AuthError
from homeserver.auth.power_levels import (
    CREATE_KEY,
    JOIN_RULES_KEY,
    POWER_LEVELS_KEY,
    get_creators,
    get_named_level,
    get_power_level,
    get_required_power_level,
    get_user_power_level,
    parse_power_level,
)
from homeserver.auth.selection import auth_types_for_event
from homeserver.events.model import Event, StateKey
from homeserver.events.signing import verify_third_party_invite_signed
from homeserver.events.validation import is_valid_user_id
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

__all__ = [
    "AuthError",
    "check_auth_events_shape",
    "check_auth_rules",
    "get_power_level",
    "get_user_power_level",
]

# The top-level integer properties of m.room.power_levels that the rules compare.
_LEVEL_KEYS: Final = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "redact",
    "kick",
    "invite",
)


def _domain(identifier: str) -> str:
    """The server name of a user, room or (v1/v2) event ID: everything after the first ':'."""
    return identifier.partition(":")[2]


# --- considering the event's auth_events ---------------------------------------------


def check_auth_events_shape(event: Event, auth_events: Sequence[Event]) -> None:
    """The state-independent rules on the events listed in ``event``'s ``auth_events``.

    ``auth_events`` are the events the PDU lists (fetched by the caller, rejected ones
    included, with ``rejected_reason`` set). Checks: no two entries for one
    (type, state_key); each entry is one the auth events selection algorithm allows for
    this event; none was rejected; all are in the event's room; v1-v11 list the
    ``m.room.create`` event, v12 must not (its room ID names it).
    The create event itself lists nothing and is not checked.
    """
    if event.type == "m.room.create":
        return
    room_version = event.room_version
    expected = auth_types_for_event(
        room_version, event.type, event.sender, event.state_key, event.content
    )
    seen: dict[StateKey, str] = {}
    for auth_event in auth_events:
        state_key = auth_event.state_key
        if state_key is None:
            raise AuthError(
                f"auth_events: {auth_event.event_id} is not a state event, "
                "so the auth events selection cannot have chosen it"
            )
        key = (auth_event.type, state_key)
        if key in seen:
            raise AuthError(
                f"auth_events: duplicate entries for {key}: {seen[key]} and {auth_event.event_id}"
            )
        seen[key] = auth_event.event_id
        if key == CREATE_KEY and room_version.room_id_is_create_event_hash:
            raise AuthError(
                "auth_events: the m.room.create event must not be listed in this room "
                "version (the room ID names it)"
            )
        if key not in expected:
            raise AuthError(
                f"auth_events: {auth_event.event_id} ({key}) is not one the auth events "
                "selection algorithm picks for this event"
            )
        if auth_event.rejected_reason is not None:
            raise AuthError(f"auth_events: {auth_event.event_id} was itself rejected")
        if auth_event.room_id != event.room_id:
            raise AuthError(
                f"auth_events: {auth_event.event_id} belongs to room {auth_event.room_id}, "
                f"not {event.room_id}"
            )
    if not room_version.room_id_is_create_event_hash and CREATE_KEY not in seen:
        raise AuthError("auth_events: there is no m.room.create event among the entries")


# --- the rules against room state -----------------------------------------------------


def check_auth_rules(event: Event, auth_events: Mapping[StateKey, Event]) -> None:
    """Authorise ``event`` against the room state in ``auth_events``.

    ``auth_events`` maps (type, state_key) to the state event in force: at least the
    pieces ``selection.auth_types_for_event`` names that exist. It must hold the
    ``m.room.create`` event in every room version, v12 included, where the caller
    looks it up from the room ID since the event does not list it. Whether the entries
    were themselves rejected is not looked at here (except that a v12 room's create
    event must have been accepted): that belongs to ``check_auth_events_shape``, and
    state resolution decides for itself which events it passes.
    """
    room_version = event.room_version
    if event.type == "m.room.create":
        _check_create(event, room_version)
        return

    create = auth_events.get(CREATE_KEY)
    if create is None:
        raise AuthError("auth_events: there is no m.room.create event")
    if room_version.room_id_is_create_event_hash:
        if create.rejected_reason is not None or event.room_id != "!" + create.event_id[1:]:
            raise AuthError("room_id: the room ID is not the ID of an accepted m.room.create event")
    for auth_event in auth_events.values():
        if auth_event.room_id != event.room_id:
            raise AuthError(
                f"auth_events: {auth_event.event_id} belongs to room {auth_event.room_id}, "
                f"not {event.room_id}"
            )

    # Any value but true counts as "not federating", as Synapse reads it.
    if create.content.get("m.federate", True) is not True and _domain(event.sender) != _domain(
        create.sender
    ):
        raise AuthError(
            "m.federate: the room does not federate and the sender's server did not create it"
        )

    if event.type == "m.room.aliases" and room_version.special_case_aliases_auth:
        _check_aliases(event)
        return

    if event.type == "m.room.member":
        _check_membership(event, auth_events, create, room_version)
        return

    sender_member = auth_events.get(("m.room.member", event.sender))
    if sender_member is None or sender_member.membership != "join":
        raise AuthError("sender membership: the sender is not joined to the room")

    sender_level = get_user_power_level(event.sender, auth_events, room_version)

    if event.type == "m.room.third_party_invite":
        invite_level = get_named_level("invite", auth_events, room_version)
        if sender_level >= invite_level:
            return
        raise AuthError(
            f"m.room.third_party_invite: sender's power level {sender_level} is below "
            f"the invite level {invite_level}"
        )

    required = get_required_power_level(
        event.type, event.state_key is not None, auth_events, room_version
    )
    if required > sender_level:
        raise AuthError(
            f"required power level: {event.type} needs {required}, the sender has {sender_level}"
        )

    state_key = event.state_key
    if state_key is not None and state_key.startswith("@") and state_key != event.sender:
        raise AuthError("state_key: a state_key starting with '@' must be the sender's own user ID")

    if event.type == "m.room.power_levels":
        _check_power_levels(event, auth_events, create, sender_level, room_version)
        return

    # v1/v2 (opaque event IDs) authorise redactions here; later versions decide
    # whether to apply a redaction when they have both events ("Handling redactions").
    if event.type == "m.room.redaction" and room_version.uses_opaque_event_ids:
        _check_redaction_v1(event, auth_events, sender_level, room_version)


# --- m.room.create --------------------------------------------------------------------


def _check_create(event: Event, room_version: RoomVersion) -> None:
    if event.prev_event_ids or event.get("prev_events"):
        raise AuthError("m.room.create: the create event must have no prev_events")
    if room_version.room_id_is_create_event_hash:
        if "room_id" in event.pdu:
            raise AuthError(
                "m.room.create: the create event must not have a room_id "
                "(the room ID is derived from its event ID)"
            )
    elif _domain(event.room_id) != _domain(event.sender):
        raise AuthError(
            "m.room.create: the domain of the room_id does not match the sender's domain"
        )
    content = event.content
    version = content.get("room_version", "1")
    if not isinstance(version, str) or version not in KNOWN_ROOM_VERSIONS:
        raise AuthError(f"m.room.create: content.room_version {version!r} is not a known version")
    if not room_version.implicit_room_creator and "creator" not in content:
        raise AuthError("m.room.create: content has no creator property")
    if room_version.creators_have_infinite_power and "additional_creators" in content:
        additional = content["additional_creators"]
        if not isinstance(additional, list):
            raise AuthError("m.room.create: additional_creators is not an array")
        for user_id in additional:
            if not isinstance(user_id, str) or not is_valid_user_id(user_id):
                raise AuthError(
                    f"m.room.create: additional_creators entry {user_id!r} is not a valid user ID"
                )


def _original_creator(create: Event, room_version: RoomVersion) -> Any:
    """``content.creator`` before v11, the create event's sender from v11 on."""
    if room_version.implicit_room_creator:
        return create.sender
    return create.content.get("creator")


# --- m.room.aliases (v1-v5) -----------------------------------------------------------


def _check_aliases(event: Event) -> None:
    if event.state_key is None:
        raise AuthError("m.room.aliases: the event has no state_key")
    if event.state_key != _domain(event.sender):
        raise AuthError("m.room.aliases: the state_key is not the sender's domain")


# --- m.room.member --------------------------------------------------------------------


def _membership_of(auth_events: Mapping[StateKey, Event], user_id: str) -> str | None:
    member = auth_events.get(("m.room.member", user_id))
    return None if member is None else member.membership


def _join_rule(auth_events: Mapping[StateKey, Event]) -> Any:
    # With no join rules event (or no join_rule in it) a room is invite-only, as in
    # Synapse; the spec leaves the case open.
    join_rules = auth_events.get(JOIN_RULES_KEY)
    if join_rules is None:
        return "invite"
    return join_rules.content.get("join_rule", "invite")


def _check_membership(
    event: Event,
    auth_events: Mapping[StateKey, Event],
    create: Event,
    room_version: RoomVersion,
) -> None:
    content = event.content
    target = event.state_key
    if target is None:
        raise AuthError("m.room.member: the event has no state_key")
    if "membership" not in content:
        raise AuthError("m.room.member: content has no membership property")
    membership = content["membership"]

    if room_version.restricted_join_rule and "join_authorised_via_users_server" in content:
        authoriser = content["join_authorised_via_users_server"]
        if not isinstance(authoriser, str) or _domain(authoriser) not in event.signatures:
            raise AuthError(
                "m.room.member: the event is not signed by the server of "
                "join_authorised_via_users_server"
            )

    if membership == "join":
        _check_join(event, target, auth_events, create, room_version)
    elif membership == "invite":
        _check_invite(event, target, auth_events, room_version)
    elif membership == "leave":
        _check_leave(event, target, auth_events, room_version)
    elif membership == "ban":
        _check_ban(event, target, auth_events, room_version)
    elif membership == "knock" and room_version.knock_join_rule:
        _check_knock(event, target, auth_events, room_version)
    else:
        raise AuthError(f"m.room.member: unknown membership {membership!r}")


def _check_join(
    event: Event,
    target: str,
    auth_events: Mapping[StateKey, Event],
    create: Event,
    room_version: RoomVersion,
) -> None:
    prev_events = event.prev_event_ids
    if (
        len(prev_events) == 1
        and prev_events[0] == create.event_id
        and target == _original_creator(create, room_version)
    ):
        return
    if event.sender != target:
        raise AuthError("join: the sender does not match the state_key")
    membership = _membership_of(auth_events, target)
    if membership == "ban":
        raise AuthError("join: the sender is banned")

    join_rule = _join_rule(auth_events)
    if join_rule == "invite" or (room_version.knock_join_rule and join_rule == "knock"):
        if membership in ("invite", "join"):
            return
        raise AuthError(f"join: the join rule is {join_rule} and the sender is not invited")

    if (room_version.restricted_join_rule and join_rule == "restricted") or (
        room_version.knock_restricted_join_rule and join_rule == "knock_restricted"
    ):
        if membership in ("invite", "join"):
            return
        authoriser = event.content.get("join_authorised_via_users_server")
        if not isinstance(authoriser, str):
            raise AuthError(
                f"restricted join: the join rule is {join_rule} and the sender is neither "
                "invited nor names a join_authorised_via_users_server"
            )
        if _membership_of(auth_events, authoriser) != "join":
            raise AuthError(
                f"restricted join: join_authorised_via_users_server {authoriser} "
                "is not a joined member of the room"
            )
        authoriser_level = get_user_power_level(authoriser, auth_events, room_version)
        invite_level = get_named_level("invite", auth_events, room_version)
        if authoriser_level < invite_level:
            raise AuthError(
                f"restricted join: join_authorised_via_users_server {authoriser} "
                "does not have the power to invite"
            )
        return

    if join_rule == "public":
        return
    raise AuthError(f"join: the join rule {join_rule!r} does not allow this join")


def _check_invite(
    event: Event,
    target: str,
    auth_events: Mapping[StateKey, Event],
    room_version: RoomVersion,
) -> None:
    target_membership = _membership_of(auth_events, target)
    if "third_party_invite" in event.content:
        _check_third_party_invite(event, target, target_membership, auth_events)
        return
    if _membership_of(auth_events, event.sender) != "join":
        raise AuthError("invite: the sender is not joined to the room")
    if target_membership in ("join", "ban"):
        raise AuthError(f"invite: the target user's membership is {target_membership}")
    sender_level = get_user_power_level(event.sender, auth_events, room_version)
    invite_level = get_named_level("invite", auth_events, room_version)
    if sender_level >= invite_level:
        return
    raise AuthError(
        f"invite: the sender's power level {sender_level} is below the invite level {invite_level}"
    )


def _check_third_party_invite(
    event: Event,
    target: str,
    target_membership: str | None,
    auth_events: Mapping[StateKey, Event],
) -> None:
    if target_membership == "ban":
        raise AuthError("third-party invite: the target user is banned")
    third_party_invite = event.content["third_party_invite"]
    signed = third_party_invite.get("signed") if isinstance(third_party_invite, Mapping) else None
    if not isinstance(signed, Mapping):
        raise AuthError("third-party invite: content.third_party_invite has no signed property")
    if "mxid" not in signed or "token" not in signed:
        raise AuthError("third-party invite: signed has no mxid or no token")
    if signed["mxid"] != target:
        raise AuthError("third-party invite: signed.mxid does not match the state_key")
    token = signed["token"]
    invite_event = (
        auth_events.get(("m.room.third_party_invite", token)) if isinstance(token, str) else None
    )
    if invite_event is None:
        raise AuthError(
            "third-party invite: no m.room.third_party_invite event has the token as state_key"
        )
    if invite_event.sender != event.sender:
        raise AuthError(
            "third-party invite: the sender did not send the m.room.third_party_invite event"
        )
    if verify_third_party_invite_signed(dict(signed), _third_party_public_keys(invite_event)):
        return
    raise AuthError(
        "third-party invite: no signature in signed matches a public key of the "
        "m.room.third_party_invite event"
    )


def _third_party_public_keys(invite_event: Event) -> list[str]:
    content = invite_event.content
    keys: list[str] = []
    public_key = content.get("public_key")
    if isinstance(public_key, str):
        keys.append(public_key)
    public_keys = content.get("public_keys")
    if isinstance(public_keys, list):
        for entry in public_keys:
            if isinstance(entry, Mapping) and isinstance(entry.get("public_key"), str):
                keys.append(entry["public_key"])
    return keys


def _check_leave(
    event: Event,
    target: str,
    auth_events: Mapping[StateKey, Event],
    room_version: RoomVersion,
) -> None:
    sender_membership = _membership_of(auth_events, event.sender)
    if event.sender == target:
        may_leave = (
            ("invite", "join", "knock") if room_version.knock_join_rule else ("invite", "join")
        )
        if sender_membership in may_leave:
            return
        raise AuthError(f"leave: cannot leave with current membership {sender_membership}")
    if sender_membership != "join":
        raise AuthError("leave: the sender is not joined to the room")
    sender_level = get_user_power_level(event.sender, auth_events, room_version)
    target_level = get_user_power_level(target, auth_events, room_version)
    if _membership_of(auth_events, target) == "ban":
        ban_level = get_named_level("ban", auth_events, room_version)
        if sender_level < ban_level:
            raise AuthError(
                f"unban: the sender's power level {sender_level} is below the ban level {ban_level}"
            )
    kick_level = get_named_level("kick", auth_events, room_version)
    if sender_level >= kick_level and target_level < sender_level:
        return
    raise AuthError(
        f"kick: the sender (power level {sender_level}) needs the kick level {kick_level} "
        f"and more power than the target ({target_level})"
    )


def _check_ban(
    event: Event,
    target: str,
    auth_events: Mapping[StateKey, Event],
    room_version: RoomVersion,
) -> None:
    if _membership_of(auth_events, event.sender) != "join":
        raise AuthError("ban: the sender is not joined to the room")
    sender_level = get_user_power_level(event.sender, auth_events, room_version)
    target_level = get_user_power_level(target, auth_events, room_version)
    ban_level = get_named_level("ban", auth_events, room_version)
    if sender_level >= ban_level and target_level < sender_level:
        return
    raise AuthError(
        f"ban: the sender (power level {sender_level}) needs the ban level {ban_level} "
        f"and more power than the target ({target_level})"
    )


def _check_knock(
    event: Event,
    target: str,
    auth_events: Mapping[StateKey, Event],
    room_version: RoomVersion,
) -> None:
    join_rule = _join_rule(auth_events)
    if join_rule != "knock" and not (
        room_version.knock_restricted_join_rule and join_rule == "knock_restricted"
    ):
        raise AuthError(f"knock: the join rule {join_rule!r} does not allow knocking")
    if event.sender != target:
        raise AuthError("knock: the sender does not match the state_key")
    membership = _membership_of(auth_events, event.sender)
    if membership not in ("ban", "invite", "join"):
        return
    raise AuthError(f"knock: cannot knock with current membership {membership}")


# --- m.room.power_levels --------------------------------------------------------------


def _checked_level(value: Any, what: str, room_version: RoomVersion) -> int:
    level = parse_power_level(value, room_version)
    if level is None:
        kind = (
            "an integer"
            if room_version.enforce_int_power_levels
            else "an integer or integer string"
        )
        raise AuthError(f"m.room.power_levels: {what} is {value!r}, not {kind}")
    return level


def _checked_levels_map(
    content: Mapping[str, Any], name: str, room_version: RoomVersion
) -> dict[str, int]:
    if name not in content:
        return {}
    value = content[name]
    if not isinstance(value, Mapping):
        if name == "notifications" and not room_version.enforce_int_power_levels:
            # Before v10 the rules never say `notifications` must be an object, and
            # Synapse accepts one that is not: it has no entries to compare.
            return {}
        raise AuthError(f"m.room.power_levels: {name} is not an object")
    return {
        key: _checked_level(level, f"{name}[{key!r}]", room_version) for key, level in value.items()
    }


def _checked_top_levels(content: Mapping[str, Any], room_version: RoomVersion) -> dict[str, int]:
    return {
        name: _checked_level(content[name], name, room_version)
        for name in _LEVEL_KEYS
        if name in content
    }


def _check_power_levels(
    event: Event,
    auth_events: Mapping[StateKey, Event],
    create: Event,
    sender_level: int,
    room_version: RoomVersion,
) -> None:
    content = event.content
    if room_version.enforce_int_power_levels:
        # Values must be integers whether or not they change.
        _checked_top_levels(content, room_version)
        _checked_levels_map(content, "events", room_version)
        _checked_levels_map(content, "notifications", room_version)

    new_users = _checked_levels_map(content, "users", room_version)
    for user_id in new_users:
        if not is_valid_user_id(user_id):
            raise AuthError(f"m.room.power_levels: users key {user_id!r} is not a valid user ID")

    if room_version.creators_have_infinite_power:
        creators = get_creators(create, room_version)
        listed = sorted(creators.intersection(new_users))
        if listed:
            raise AuthError(f"m.room.power_levels: room creators {listed} must not appear in users")

    previous = auth_events.get(POWER_LEVELS_KEY)
    if previous is None:
        return
    old_content = previous.content

    new_top = _checked_top_levels(content, room_version)
    old_top = _checked_top_levels(old_content, room_version)
    for name in _LEVEL_KEYS:
        _check_level_change(name, old_top.get(name), new_top.get(name), sender_level)

    maps = ["events"]
    if room_version.limit_notifications_power_levels:
        maps.append("notifications")
    for name in maps:
        old_map = _checked_levels_map(old_content, name, room_version)
        new_map = _checked_levels_map(content, name, room_version)
        for key in old_map.keys() | new_map.keys():
            _check_level_change(
                f"{name}[{key!r}]", old_map.get(key), new_map.get(key), sender_level
            )

    old_users = _checked_levels_map(old_content, "users", room_version)
    for user_id in old_users.keys() | new_users.keys():
        old, new = old_users.get(user_id), new_users.get(user_id)
        if old == new:
            continue
        if old is not None and user_id != event.sender and old >= sender_level:
            raise AuthError(
                f"m.room.power_levels: cannot change or remove users[{user_id!r}] = {old}, "
                f"not below the sender's power level {sender_level}"
            )
        if new is not None and new > sender_level:
            raise AuthError(
                f"m.room.power_levels: cannot set users[{user_id!r}] to {new}, "
                f"above the sender's power level {sender_level}"
            )


def _check_level_change(what: str, old: int | None, new: int | None, sender_level: int) -> None:
    """Rules for ``*_default``/ban/kick/redact/invite and ``events``/``notifications``
    entries: an added, changed or removed value may be neither above the sender's level
    before nor after."""
    if old == new:
        return
    if old is not None and old > sender_level:
        raise AuthError(
            f"m.room.power_levels: cannot change or remove {what} = {old}, above the "
            f"sender's power level {sender_level}"
        )
    if new is not None and new > sender_level:
        raise AuthError(
            f"m.room.power_levels: cannot set {what} to {new}, above the sender's power "
            f"level {sender_level}"
        )


# --- m.room.redaction (v1, v2) ----------------------------------------------------------


def _check_redaction_v1(
    event: Event,
    auth_events: Mapping[StateKey, Event],
    sender_level: int,
    room_version: RoomVersion,
) -> None:
    redact_level = get_named_level("redact", auth_events, room_version)
    if sender_level >= redact_level:
        return
    redacts = event.redacts
    if redacts is not None and _domain(redacts) == _domain(event.event_id):
        return
    raise AuthError(
        f"m.room.redaction: the sender's power level {sender_level} is below the redact "
        f"level {redact_level} and the redacted event is from another server"
    )
