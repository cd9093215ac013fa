"""Rules "considering the event's auth_events", and the auth events selection."""

from __future__ import annotations

import pytest

from homeserver.auth import (
    AuthError,
    auth_types_for_event,
    check_auth_events_shape,
    select_auth_events,
)
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from tests.unit.auth_fixtures import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    Room,
    make_create,
    standard_room,
    versions,
)

CREATE = ("m.room.create", "")
PL = ("m.room.power_levels", "")
JR = ("m.room.join_rules", "")


def listed(room: Room, event) -> list:
    """The auth events a correct server lists for ``event``."""
    ids = select_auth_events(
        room.room_version,
        event.type,
        event.sender,
        event.state_key,
        event.content,
        {key: ev.event_id for key, ev in room.state.items()},
    )
    by_id = {ev.event_id: ev for ev in room.state.values()}
    return [by_id[i] for i in ids]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_selected_auth_events_pass(version: str) -> None:
    room = standard_room(version)
    message = room.event("m.room.message", ALICE, {"body": "hi"})
    check_auth_events_shape(message, listed(room, message))
    join = room.member(BOB, "join")
    check_auth_events_shape(join, listed(room, join))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_create_event_lists_nothing_and_is_not_checked(version: str) -> None:
    check_auth_events_shape(make_create(version), [])


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_duplicate_type_and_state_key_is_rejected(version: str) -> None:
    room = standard_room(version)
    message = room.event("m.room.message", ALICE, {"body": "hi"})
    second_pl = room.power_levels({"users": {}})
    with pytest.raises(AuthError, match=r"auth_events: duplicate entries"):
        check_auth_events_shape(message, [*listed(room, message), second_pl])


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_unexpected_entry_is_rejected(version: str) -> None:
    room = standard_room(version)
    message = room.event("m.room.message", ALICE, {"body": "hi"})
    topic = room.add(room.event("m.room.topic", ALICE, {"topic": "t"}, state_key=""))
    with pytest.raises(AuthError, match=r"auth_events: .*not one the auth events selection"):
        check_auth_events_shape(message, [*listed(room, message), topic])
    # join rules are selected for joins, not for messages
    with pytest.raises(AuthError, match=r"auth_events: .*not one the auth events selection"):
        check_auth_events_shape(message, [*listed(room, message), room.state[JR]])
    # another user's membership is not selected for a message
    bob = room.set_member(BOB, "join")
    with pytest.raises(AuthError, match=r"auth_events: .*not one the auth events selection"):
        check_auth_events_shape(message, [*listed(room, message), bob])


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_non_state_entry_is_rejected(version: str) -> None:
    room = standard_room(version)
    message = room.event("m.room.message", ALICE, {"body": "hi"})
    other = room.event("m.room.message", ALICE, {"body": "earlier"})
    with pytest.raises(AuthError, match=r"auth_events: .*not a state event"):
        check_auth_events_shape(message, [*listed(room, message), other])


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_rejected_entry_is_rejected(version: str) -> None:
    room = standard_room(version)
    message = room.event("m.room.message", ALICE, {"body": "hi"})
    auth = listed(room, message)
    room.state[PL].rejected_reason = "not allowed"
    with pytest.raises(AuthError, match=r"auth_events: .*was itself rejected"):
        check_auth_events_shape(message, auth)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_entry_from_another_room_is_rejected(version: str) -> None:
    room = standard_room(version)
    other = standard_room(version)
    if room.room_version.room_id_is_create_event_hash:
        assert other.room_id != room.room_id
    else:
        other.room_id = "!other:a.test"
    message = room.event("m.room.message", ALICE, {"body": "hi"})
    foreign_pl = other.power_levels({"users": {}})
    auth = [ev for ev in listed(room, message) if ev.type != "m.room.power_levels"]
    with pytest.raises(AuthError, match=r"auth_events: .*belongs to room"):
        check_auth_events_shape(message, [*auth, foreign_pl])


@pytest.mark.parametrize("version", versions(lambda rv: not rv.room_id_is_create_event_hash))
def test_create_event_must_be_listed_before_v12(version: str) -> None:
    room = standard_room(version)
    message = room.event("m.room.message", ALICE, {"body": "hi"})
    auth = listed(room, message)
    assert room.create in auth
    without_create = [ev for ev in auth if ev is not room.create]
    with pytest.raises(AuthError, match=r"no m.room.create event among the entries"):
        check_auth_events_shape(message, without_create)


@pytest.mark.parametrize("version", versions(lambda rv: rv.room_id_is_create_event_hash))
def test_v12_create_event_must_not_be_listed(version: str) -> None:
    room = standard_room(version)
    message = room.event("m.room.message", ALICE, {"body": "hi"})
    auth = listed(room, message)
    assert room.create not in auth
    check_auth_events_shape(message, auth)
    with pytest.raises(AuthError, match=r"m.room.create event must not be listed"):
        check_auth_events_shape(message, [*auth, room.create])


# --- the selection algorithm --------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_types_for_create_is_empty(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    assert auth_types_for_event(rv, "m.room.create", ALICE, "", {}) == set()


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_types_for_message(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    assert auth_types_for_event(rv, "m.room.message", BOB, None, {}) == {
        CREATE,
        PL,
        ("m.room.member", BOB),
    }


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("membership", ["join", "invite", "knock"])
def test_auth_types_for_membership_with_join_rules(version: str, membership: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    types = auth_types_for_event(rv, "m.room.member", ALICE, BOB, {"membership": membership})
    assert types == {CREATE, PL, ("m.room.member", ALICE), ("m.room.member", BOB), JR}


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("membership", ["leave", "ban"])
def test_auth_types_for_membership_without_join_rules(version: str, membership: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    types = auth_types_for_event(rv, "m.room.member", ALICE, BOB, {"membership": membership})
    assert types == {CREATE, PL, ("m.room.member", ALICE), ("m.room.member", BOB)}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_types_for_third_party_invite(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    content = {"membership": "invite", "third_party_invite": {"signed": {"token": "tok"}}}
    types = auth_types_for_event(rv, "m.room.member", ALICE, BOB, content)
    assert ("m.room.third_party_invite", "tok") in types
    # malformed third-party invites select nothing extra (and do not crash)
    for bad in [{"signed": "x"}, "x", {"signed": {"token": 5}}]:
        content = {"membership": "invite", "third_party_invite": bad}
        types = auth_types_for_event(rv, "m.room.member", ALICE, BOB, content)
        assert not any(t == "m.room.third_party_invite" for t, _ in types)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_types_for_restricted_join(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    content = {"membership": "join", "join_authorised_via_users_server": CAROL}
    types = auth_types_for_event(rv, "m.room.member", BOB, BOB, content)
    assert (("m.room.member", CAROL) in types) == rv.restricted_join_rule


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_select_auth_events_order_and_create(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    state = {
        CREATE: "$create",
        PL: "$pl",
        JR: "$jr",
        ("m.room.member", ALICE): "$alice",
        ("m.room.member", BOB): "$bob",
        ("m.room.topic", ""): "$topic",
    }
    selected = select_auth_events(rv, "m.room.member", ALICE, BOB, {"membership": "invite"}, state)
    expected = ["$create", "$pl", "$alice", "$bob", "$jr"]
    if rv.room_id_is_create_event_hash:
        expected.remove("$create")
    assert selected == expected
    # missing state is simply not selected
    assert select_auth_events(rv, "m.room.message", CAROL, None, {}, {CREATE: "$create"}) == (
        [] if rv.room_id_is_create_event_hash else ["$create"]
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_self_membership_is_selected_once(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    state = {CREATE: "$create", ("m.room.member", BOB): "$bob"}
    selected = select_auth_events(rv, "m.room.member", BOB, BOB, {"membership": "leave"}, state)
    assert selected.count("$bob") == 1


def test_room_fixture_sanity() -> None:
    room = Room("12")
    assert room.room_id == "!" + room.create.event_id[1:]
