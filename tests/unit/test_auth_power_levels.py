"""Rules for m.room.power_levels, and the power level helpers state resolution uses."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.auth import (
    CREATOR_POWER_LEVEL,
    AuthError,
    get_named_level,
    get_power_level,
    get_required_power_level,
    get_user_power_level,
)
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from tests.unit.auth_fixtures import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    DAVE,
    Room,
    standard_room,
    versions,
)

V_INT = versions(lambda rv: rv.enforce_int_power_levels)
V_STRINGY = versions(lambda rv: not rv.enforce_int_power_levels)
V_LENIENT_JSON = versions(lambda rv: not rv.strict_canonical_json)
V12 = versions(lambda rv: rv.creators_have_infinite_power)
V_NOT12 = versions(lambda rv: not rv.creators_have_infinite_power)


def moderated_room(version: str, **levels: Any) -> Room:
    """alice: creator (100 before v12), bob: 50, carol: 0; all joined."""
    rv = KNOWN_ROOM_VERSIONS[version]
    users: dict[str, Any] = {BOB: 50}
    if not rv.creators_have_infinite_power:
        users[ALICE] = 100
    room = standard_room(version, users=users, extra_levels=levels)
    room.set_member(BOB, "join")
    room.set_member(CAROL, "join")
    return room


def current_levels(room: Room) -> dict[str, Any]:
    content = room.state[("m.room.power_levels", "")].content
    return {
        key: (dict(value) if isinstance(value, dict) else value) for key, value in content.items()
    }


def proposed(
    room: Room, changes: dict[str, Any] | None = None, *, sender: str = BOB, **more: Any
) -> Any:
    """The current power levels with ``changes`` (None removes a key), sent by ``sender``."""
    content = current_levels(room)
    for key, value in {**(changes or {}), **more}.items():
        if value is None:
            content.pop(key, None)
        else:
            content[key] = value
    return room.power_levels(content, sender=sender)


def allowed(room: Room, event: Any) -> None:
    room.check(event)


def rejected(room: Room, event: Any, match: str) -> None:
    with pytest.raises(AuthError, match=match):
        room.check(event)


# --- the first power levels event ----------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_first_power_levels_event_is_allowed(version: str) -> None:
    room = Room(version)
    room.set_member(ALICE, "join", prev_events=[room.create.event_id])
    users = {} if KNOWN_ROOM_VERSIONS[version].creators_have_infinite_power else {ALICE: 100}
    allowed(room, room.power_levels({"users": {**users, BOB: 100}, "ban": 1000}))


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    "users",
    [{"bob": 50}, {"@bob": 50}, {"": 50}, {BOB: "fifty"}, {BOB: "50.5"}, {BOB: None}, [BOB]],
)
def test_users_must_be_valid_user_ids_with_integer_levels(version: str, users: Any) -> None:
    room = moderated_room(version)
    rejected(room, proposed(room, users=users), r"m.room.power_levels: users")
    # even for the first power levels event
    fresh = Room(version)
    fresh.set_member(ALICE, "join")
    rejected(fresh, fresh.power_levels({"users": users}), r"m.room.power_levels: users")


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("value", ["50", " +50 ", "0050", True])
def test_stringy_user_levels_before_v10(version: str, value: Any) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    room = moderated_room(version)
    users = current_levels(room)["users"]
    event = proposed(room, users={**users, CAROL: value}, sender=ALICE)
    if rv.enforce_int_power_levels:
        rejected(room, event, r"m.room.power_levels: users\[.*not an integer")
    else:
        allowed(room, event)


@pytest.mark.parametrize("version", V_LENIENT_JSON)
def test_floaty_user_levels_are_truncated_v1_to_v5(version: str) -> None:
    room = moderated_room(version)
    users = current_levels(room)["users"]
    allowed(room, proposed(room, sender=ALICE, users={**users, CAROL: 99.9}))
    # bob (50) may set carol to 50.7, which is 50, his own level
    allowed(room, proposed(room, sender=BOB, users={**users, CAROL: 50.7}))
    rejected(
        room,
        proposed(room, sender=ALICE, users={**users, CAROL: float("inf")}),
        r"m.room.power_levels: users",
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    "key", ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"]
)
@pytest.mark.parametrize("value", ["50", None, 50.0, True, [50]])
def test_top_level_values_must_be_integers_from_v10(version: str, key: str, value: Any) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    fresh = Room(version)
    fresh.set_member(ALICE, "join")
    users = {} if rv.creators_have_infinite_power else {ALICE: 100}
    event = fresh.power_levels({"users": users, key: value})
    if rv.enforce_int_power_levels:
        rejected(fresh, event, rf"m.room.power_levels: {key} is .*not an integer")
    else:
        # before v10 nothing is checked on the first event but the users map
        allowed(fresh, event)


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("key", ["events", "notifications"])
@pytest.mark.parametrize("value", [{"m.room.name": "50"}, {"room": None}, "junk", [1]])
def test_events_and_notifications_must_map_to_integers_from_v10(
    version: str, key: str, value: Any
) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    fresh = Room(version)
    fresh.set_member(ALICE, "join")
    users = {} if rv.creators_have_infinite_power else {ALICE: 100}
    event = fresh.power_levels({"users": users, key: value})
    if rv.enforce_int_power_levels:
        rejected(fresh, event, rf"m.room.power_levels: {key}")
    else:
        allowed(fresh, event)


@pytest.mark.parametrize("version", V_INT)
def test_integer_levels_pass_from_v10(version: str) -> None:
    room = moderated_room(version)
    allowed(
        room,
        proposed(room, sender=BOB, ban=40, events={"m.room.name": 50}, notifications={"room": 50}),
    )


# --- changes ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    "key", ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"]
)
def test_top_level_changes(version: str, key: str) -> None:
    room = moderated_room(version, events={"m.room.power_levels": 50})
    # bob (50) may add, change and remove values up to his own level
    allowed(room, proposed(room, {key: 50}))
    allowed(room, proposed(room, {key: 10}))
    # but not above it
    rejected(room, proposed(room, {key: 51}), rf"cannot set {key} to 51, above the sender's")
    # and not touch a value already above it
    room.set_power_levels({**current_levels(room), key: 60})
    rejected(room, proposed(room, {key: 10}), rf"cannot change or remove {key} = 60")
    rejected(room, proposed(room, {key: None}), rf"cannot change or remove {key} = 60")
    # unchanged values above his level are fine
    allowed(room, proposed(room, events={"m.room.power_levels": 50, "m.room.topic": 0}))


@pytest.mark.parametrize("version", V_STRINGY)
def test_stringy_unchanged_value_is_not_a_change(version: str) -> None:
    room = moderated_room(version, ban=60)
    allowed(room, proposed(room, ban="60"))
    allowed(room, proposed(room, ban=" 060 "))
    rejected(room, proposed(room, ban="61"), r"cannot change or remove ban = 60")


@pytest.mark.parametrize("version", V_STRINGY)
def test_invalid_changed_values_are_rejected_before_v10(version: str) -> None:
    room = moderated_room(version)
    rejected(room, proposed(room, ban="high"), r"m.room.power_levels: ban is 'high'")
    rejected(room, proposed(room, events={"m.room.name": "x"}), r"events\['m.room.name'\] is")
    rejected(room, proposed(room, events="x"), r"m.room.power_levels: events is not an object")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_events_entries(version: str) -> None:
    room = moderated_room(version, events={"m.room.name": 60, "m.room.topic": 40})
    allowed(room, proposed(room, events={"m.room.name": 60, "m.room.topic": 50}))
    allowed(room, proposed(room, events={"m.room.name": 60}))  # remove topic (40)
    allowed(room, proposed(room, events={"m.room.name": 60, "m.room.topic": 40, "x": 50}))
    rejected(
        room,
        proposed(room, events={"m.room.name": 60, "m.room.topic": 40, "x": 51}),
        r"cannot set events\['x'\] to 51",
    )
    rejected(
        room,
        proposed(room, events={"m.room.name": 50, "m.room.topic": 40}),
        r"cannot change or remove events\['m.room.name'\] = 60",
    )
    rejected(
        room,
        proposed(room, events={"m.room.topic": 40}),
        r"cannot change or remove events\['m.room.name'\] = 60",
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_notifications_entries_are_checked_from_v6(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    room = moderated_room(version, notifications={"room": 60})
    lower = proposed(room, notifications={"room": 10})
    added = proposed(room, notifications={"room": 60, "other": 100})
    if rv.limit_notifications_power_levels:
        rejected(room, lower, r"cannot change or remove notifications\['room'\] = 60")
        rejected(room, added, r"cannot set notifications\['other'\] to 100")
    else:
        allowed(room, lower)
        allowed(room, added)
    allowed(room, proposed(room, notifications={"room": 60, "other": 50}))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_users_entries(version: str) -> None:
    room = moderated_room(version)
    users = current_levels(room)["users"]
    # bob (50) may add users up to his level
    allowed(room, proposed(room, users={**users, CAROL: 50}))
    rejected(room, proposed(room, users={**users, CAROL: 51}), r"cannot set users\[.*carol.*51")
    # may demote himself, not promote himself
    allowed(room, proposed(room, users={**users, BOB: 10}))
    allowed(room, proposed(room, users={k: v for k, v in users.items() if k != BOB}))
    rejected(room, proposed(room, users={**users, BOB: 51}), r"cannot set users\[.*bob.*51")
    # may not touch others at or above his level
    room.set_power_levels({**current_levels(room), "users": {**users, DAVE: 50}})
    users = current_levels(room)["users"]
    rejected(
        room,
        proposed(room, users={**users, DAVE: 10}),
        r"cannot change or remove users\[.*dave.*\] = 50, not below",
    )
    rejected(
        room,
        proposed(room, users={k: v for k, v in users.items() if k != DAVE}),
        r"cannot change or remove users\[.*dave.*\] = 50",
    )
    # but may change those below
    room.set_power_levels({**current_levels(room), "users": {**users, DAVE: 49}})
    users = current_levels(room)["users"]
    allowed(room, proposed(room, users={**users, DAVE: 0}))


@pytest.mark.parametrize("version", V_NOT12)
def test_creator_is_an_ordinary_user_entry_before_v12(version: str) -> None:
    room = moderated_room(version)
    users = current_levels(room)["users"]
    room.set_power_levels({**current_levels(room), "users": {**users, BOB: 100}})
    users = current_levels(room)["users"]
    # equals cannot demote each other, creator or not
    rejected(
        room,
        proposed(room, sender=BOB, users={**users, ALICE: 0}),
        r"cannot change or remove users\[.*alice",
    )
    rejected(
        room,
        proposed(room, sender=ALICE, users={**users, BOB: 0}),
        r"cannot change or remove users\[.*bob",
    )
    # but the creator can demote herself, and then be demoted
    allowed(room, proposed(room, sender=ALICE, users={**users, ALICE: 10}))
    room.set_power_levels({**current_levels(room), "users": {**users, ALICE: 10}})
    users = current_levels(room)["users"]
    allowed(room, proposed(room, sender=BOB, users={**users, ALICE: 0}))


# --- v12 creators ------------------------------------------------------------------------


@pytest.mark.parametrize("version", V12)
def test_v12_creators_must_not_appear_in_users(version: str) -> None:
    room = moderated_room(version)
    users = current_levels(room)["users"]
    rejected(
        room,
        proposed(room, sender=ALICE, users={**users, ALICE: 100}),
        r"room creators .*alice.* must not appear in users",
    )
    # even in the first power levels event
    fresh = Room(version)
    fresh.set_member(ALICE, "join")
    rejected(fresh, fresh.power_levels({"users": {ALICE: 100}}), r"room creators")


@pytest.mark.parametrize("version", V12)
def test_v12_additional_creators_must_not_appear_in_users(version: str) -> None:
    room = standard_room(version, users={}, create_content={"additional_creators": [DAVE]})
    room.set_member(DAVE, "join")
    rejected(room, room.power_levels({"users": {DAVE: 50}}), r"room creators .*dave")
    allowed(room, room.power_levels({"users": {BOB: 50}}))
    allowed(room, room.power_levels({"users": {BOB: 50}}, sender=DAVE))


@pytest.mark.parametrize("version", V12)
def test_v12_creators_have_infinite_power(version: str) -> None:
    room = standard_room(
        version, users={BOB: 2**53 - 1}, create_content={"additional_creators": [DAVE]}
    )
    room.set_member(BOB, "join")
    room.set_member(DAVE, "join")
    auth = room.state
    assert get_user_power_level(ALICE, auth, room.room_version) == CREATOR_POWER_LEVEL
    assert get_user_power_level(DAVE, auth, room.room_version) == CREATOR_POWER_LEVEL
    assert get_user_power_level(BOB, auth, room.room_version) < CREATOR_POWER_LEVEL
    # a creator can change anything, even levels above any integer
    allowed(room, room.power_levels({"users": {BOB: 0}, "ban": 2**53 - 1}, sender=DAVE))
    # nobody can kick or ban a creator, not even another creator
    rejected(room, room.member(ALICE, "ban", sender=BOB), r"ban: .*more power than the target")
    rejected(room, room.member(ALICE, "leave", sender=DAVE), r"kick: .*more power than the target")
    allowed(room, room.member(BOB, "ban", sender=DAVE))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_creator_level_without_power_levels(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    room = Room(version)
    room.set_member(ALICE, "join")
    level = get_user_power_level(ALICE, room.state, rv)
    assert level == (CREATOR_POWER_LEVEL if rv.creators_have_infinite_power else 100)
    assert get_user_power_level(BOB, room.state, rv) == 0
    assert get_power_level is get_user_power_level
    # so the creator may send state (state_default 50) and others may not
    allowed(room, room.event("m.room.name", ALICE, {"name": "n"}, state_key=""))
    room.set_member(BOB, "join")
    rejected(room, room.event("m.room.name", BOB, {"name": "n"}, state_key=""), "required power")
    allowed(room, room.event("m.room.message", BOB, {"body": "b"}))


# --- lookups -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_level_lookups(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    room = moderated_room(version, users_default=5, kick=20, events={"m.room.name": 70})
    assert get_user_power_level(BOB, room.state, rv) == 50
    assert get_user_power_level(CAROL, room.state, rv) == 5
    assert get_named_level("kick", room.state, rv) == 20
    assert get_named_level("ban", room.state, rv) == 50
    assert get_named_level("invite", room.state, rv) == 0
    assert get_named_level("redact", room.state, rv) == 50
    assert get_required_power_level("m.room.name", True, room.state, rv) == 70
    assert get_required_power_level("m.room.topic", True, room.state, rv) == 50
    assert get_required_power_level("m.room.message", False, room.state, rv) == 0


@pytest.mark.parametrize("version", V_STRINGY)
def test_stringy_lookups_before_v10(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    room = Room(version)
    room.set_power_levels(
        {"users": {BOB: " 070 "}, "users_default": "+5", "kick": "bad", "events": {"x": "-1"}}
    )
    assert get_user_power_level(BOB, room.state, rv) == 70
    assert get_user_power_level(CAROL, room.state, rv) == 5
    # an invalid leftover value reads as the default
    assert get_named_level("kick", room.state, rv) == 50
    assert get_required_power_level("x", False, room.state, rv) == -1


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_non_object_notifications_only_rejected_from_v10(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    room = moderated_room(version)
    change = proposed(room, notifications=[])
    if rv.enforce_int_power_levels:
        rejected(room, change, "notifications is not an object")
    else:
        allowed(room, change)
