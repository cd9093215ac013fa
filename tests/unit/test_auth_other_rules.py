"""The rules after the membership rules: sender membership, m.room.third_party_invite,
required power level, '@' state keys, m.room.aliases (v1-v5), m.room.redaction (v1-v2)."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.auth import AuthError, check_auth_rules
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from tests.unit.auth_fixtures import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    Room,
    standard_room,
    versions,
)

V_ALIASES = versions(lambda rv: rv.special_case_aliases_auth)
V_NO_ALIASES = versions(lambda rv: not rv.special_case_aliases_auth)


def allowed(room: Room, event: Any) -> None:
    room.check(event)


def rejected(room: Room, event: Any, match: str) -> None:
    with pytest.raises(AuthError, match=match):
        room.check(event)


def room_with_bob(version: str, **levels: Any) -> Room:
    rv = KNOWN_ROOM_VERSIONS[version]
    users = {} if rv.creators_have_infinite_power else {ALICE: 100}
    room = standard_room(version, users=users, extra_levels=levels)
    room.set_member(BOB, "join")
    return room


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("membership", [None, "invite", "leave", "ban", "knock"])
def test_sender_must_be_joined(version: str, membership: str | None) -> None:
    room = standard_room(version)
    message = room.event("m.room.message", BOB, {"body": "hi"})
    if membership is not None:
        room.set_member(BOB, membership, sender=ALICE if membership in ("invite", "ban") else BOB)
    rejected(room, message, r"sender membership: the sender is not joined")
    room.set_member(BOB, "join")
    allowed(room, message)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_event_needs_invite_level(version: str) -> None:
    room = room_with_bob(version, invite=10, state_default=0)
    event = room.event("m.room.third_party_invite", BOB, {"public_key": "k"}, state_key="tok")
    rejected(room, event, r"m.room.third_party_invite: sender's power level 0 is below .* 10")
    room = room_with_bob(version, invite=0, state_default=100)
    # the state default does not apply to it
    allowed(room, room.event("m.room.third_party_invite", BOB, {"public_key": "k"}, state_key="t"))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_required_power_level(version: str) -> None:
    room = room_with_bob(version, events={"m.room.message": 10, "m.room.topic": 0})
    rejected(
        room,
        room.event("m.room.message", BOB, {"body": "hi"}),
        r"required power level: m.room.message needs 10, the sender has 0",
    )
    allowed(room, room.event("m.custom", BOB, {}))  # events_default 0
    allowed(room, room.event("m.room.topic", BOB, {"topic": "t"}, state_key=""))
    rejected(
        room,
        room.event("m.room.name", BOB, {"name": "n"}, state_key=""),
        r"required power level: m.room.name needs 50",
    )
    # a state event needs state_default whatever its type; a message events_default
    rejected(room, room.event("m.custom", BOB, {}, state_key=""), r"needs 50")
    room = room_with_bob(version, events_default=5)
    rejected(room, room.event("m.custom", BOB, {}), r"required power level: m.custom needs 5")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_user_id_state_keys_belong_to_their_user(version: str) -> None:
    room = room_with_bob(version, state_default=0)
    allowed(room, room.event("m.custom", BOB, {}, state_key=BOB))
    allowed(room, room.event("m.custom", BOB, {}, state_key="bob"))
    rejected(
        room,
        room.event("m.custom", BOB, {}, state_key=CAROL),
        r"state_key: a state_key starting with '@' must be the sender's",
    )
    # not even the room's most powerful user may write someone else's
    rejected(room, room.event("m.custom", ALICE, {}, state_key=BOB), r"state_key: ")
    rejected(room, room.event("m.custom", BOB, {}, state_key=BOB + "_x"), r"state_key: ")


# --- m.room.aliases ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_aliases(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    room = standard_room(version)  # bob is not in the room
    own = room.event("m.room.aliases", BOB, {"aliases": ["#a:b.test"]}, state_key="b.test")
    other = room.event("m.room.aliases", BOB, {"aliases": ["#a:c.test"]}, state_key="c.test")
    if rv.special_case_aliases_auth:
        allowed(room, own)
        rejected(room, other, r"m.room.aliases: the state_key is not the sender's domain")
        no_key = room.event("m.room.aliases", BOB, {"aliases": []})
        rejected(room, no_key, r"m.room.aliases: the event has no state_key")
    else:
        # an ordinary state event now
        rejected(room, own, r"sender membership")
        room.set_member(BOB, "join")
        rejected(room, own, r"required power level: m.room.aliases needs 50")
        allowed(room, room.event("m.room.aliases", ALICE, {}, state_key="c.test"))


# --- m.room.redaction ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_redaction(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    room = room_with_bob(version)

    def redaction(redacts: str, event_id: str | None = None) -> Any:
        if rv.redacts_in_content:
            return room.event("m.room.redaction", BOB, {"redacts": redacts}, event_id=event_id)
        return room.event(
            "m.room.redaction", BOB, {}, event_id=event_id, extra={"redacts": redacts}
        )

    if rv.uses_opaque_event_ids:
        # bob (0) is below the redact level (50): only events from his own server
        allowed(room, redaction("$1:b.test", event_id="$99:b.test"))
        rejected(
            room,
            redaction("$1:a.test", event_id="$98:b.test"),
            r"m.room.redaction: the sender's power level 0 is below the redact level 50",
        )
        allowed(room, room.event("m.room.redaction", ALICE, {}, extra={"redacts": "$1:b.test"}))
    else:
        # the redact level is for later: the auth rules let anyone send a redaction
        allowed(room, redaction("$elsewhere"))
        room = room_with_bob(version, events={"m.room.redaction": 10})
        rejected(room, redaction("$elsewhere"), r"required power level: m.room.redaction")


@pytest.mark.parametrize("version", versions(lambda rv: rv.uses_opaque_event_ids))
def test_v1_redaction_without_redacts_needs_redact_level(version: str) -> None:
    room = room_with_bob(version)
    rejected(room, room.event("m.room.redaction", BOB, {}), r"m.room.redaction")
    room = room_with_bob(version, redact=0)
    allowed(room, room.event("m.room.redaction", BOB, {}))


# --- auth events from another room ---------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_state_from_another_room_is_rejected(version: str) -> None:
    room = room_with_bob(version)
    other = room_with_bob(version)
    if not room.room_version.room_id_is_create_event_hash:
        other.room_id = "!other:a.test"
    message = room.event("m.room.message", BOB, {"body": "hi"})
    auth = room.auth_state_for(message)
    auth[("m.room.member", BOB)] = other.member(BOB, "join")
    with pytest.raises(AuthError, match=r"auth_events: .* belongs to room"):
        check_auth_rules(message, auth)
