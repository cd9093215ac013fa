"""Rules for m.room.create (rule 1 in every version) and the v12 room ID rule."""

from __future__ import annotations

import pytest

from homeserver.auth import AuthError, check_auth_rules
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from tests.unit.auth_fixtures import ALICE, ALL_VERSIONS, BOB, Room, make_create, versions


def check_create(event) -> None:
    check_auth_rules(event, {})


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_plain_create_is_allowed(version: str) -> None:
    check_create(make_create(version))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_create_with_prev_events_is_rejected(version: str) -> None:
    with pytest.raises(AuthError, match=r"m.room.create.*prev_events"):
        check_create(make_create(version, prev_events=["$other"]))


@pytest.mark.parametrize("version", versions(lambda rv: not rv.room_id_is_create_event_hash))
def test_room_id_domain_must_match_sender(version: str) -> None:
    check_create(make_create(version, room_id="!r:a.test"))
    with pytest.raises(AuthError, match=r"m.room.create.*domain of the room_id"):
        check_create(make_create(version, room_id="!r:elsewhere.test"))


@pytest.mark.parametrize("version", versions(lambda rv: rv.room_id_is_create_event_hash))
def test_v12_create_must_not_have_room_id(version: str) -> None:
    check_create(make_create(version))
    with pytest.raises(AuthError, match=r"m.room.create.*must not have a room_id"):
        check_create(make_create(version, room_id="!r:a.test"))


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("bad", ["999", "", 1, None])
def test_unknown_room_version_in_content_is_rejected(version: str, bad: object) -> None:
    content = {"room_version": bad, "creator": ALICE}
    with pytest.raises(AuthError, match=r"m.room.create.*room_version"):
        check_create(make_create(version, content=content))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_missing_room_version_means_v1_and_is_allowed(version: str) -> None:
    check_create(make_create(version, content={"creator": ALICE}))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_creator_property(version: str) -> None:
    room_version = KNOWN_ROOM_VERSIONS[version]
    event = make_create(version, content={"room_version": version})
    if room_version.implicit_room_creator:
        check_create(event)
    else:
        with pytest.raises(AuthError, match=r"m.room.create.*no creator"):
            check_create(event)


@pytest.mark.parametrize("version", versions(lambda rv: rv.creators_have_infinite_power))
@pytest.mark.parametrize(
    "additional",
    [[BOB], [], [BOB, "@carol:c.test"], ["@:c.test"]],
)
def test_v12_valid_additional_creators(version: str, additional: object) -> None:
    check_create(make_create(version, content={"additional_creators": additional}))


@pytest.mark.parametrize("version", versions(lambda rv: rv.creators_have_infinite_power))
@pytest.mark.parametrize(
    "additional",
    [
        BOB,
        {"a": BOB},
        None,
        [BOB, 1],
        ["bob"],
        ["@bob"],
        ["@bob:"],
        ["@bob:b.test:x"],
        ["@" + "x" * 250 + ":b.test"],
    ],
)
def test_v12_invalid_additional_creators_are_rejected(version: str, additional: object) -> None:
    with pytest.raises(AuthError, match=r"m.room.create.*additional_creators"):
        check_create(make_create(version, content={"additional_creators": additional}))


@pytest.mark.parametrize("version", versions(lambda rv: not rv.creators_have_infinite_power))
def test_additional_creators_mean_nothing_before_v12(version: str) -> None:
    check_create(make_create(version, content={"creator": ALICE, "additional_creators": "junk"}))


# --- v12 rule 2: the room ID is the create event's ID --------------------------------


@pytest.mark.parametrize("version", versions(lambda rv: rv.room_id_is_create_event_hash))
def test_v12_room_id_must_name_the_create_event(version: str) -> None:
    room = Room(version)
    join = room.member(ALICE, "join", prev_events=[room.create.event_id])
    room.check(join)
    other_create = make_create(version, event_id="$someotherroom")
    with pytest.raises(AuthError, match=r"room_id.*m.room.create"):
        check_auth_rules(join, {("m.room.create", ""): other_create})


@pytest.mark.parametrize("version", versions(lambda rv: rv.room_id_is_create_event_hash))
def test_v12_room_id_must_name_an_accepted_create_event(version: str) -> None:
    room = Room(version)
    join = room.member(ALICE, "join", prev_events=[room.create.event_id])
    room.create.rejected_reason = "bad signature"
    with pytest.raises(AuthError, match=r"room_id.*accepted m.room.create"):
        room.check(join)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_no_create_event_in_state_is_rejected(version: str) -> None:
    room = Room(version)
    join = room.member(ALICE, "join", prev_events=[room.create.event_id])
    with pytest.raises(AuthError, match=r"no m.room.create"):
        check_auth_rules(join, {})
