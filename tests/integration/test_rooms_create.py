"""POST /createRoom over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.harness import RunningHomeserver
from tests.integration.rooms_helpers import (
    User,
    alice,
    assert_error,
    bob,
    carol,
    quote,
    server,
)

__all__ = ["alice", "bob", "carol", "server"]  # fixtures


def state_map(user: User, room_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    events = user.ok("GET", f"/rooms/{quote(room_id)}/state")
    return {(e["type"], e["state_key"]): e for e in events}


def test_private_chat_preset(alice: User) -> None:
    room_id = alice.create_room(preset="private_chat")
    state = state_map(alice, room_id)
    assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "invite"}
    assert state[("m.room.history_visibility", "")]["content"] == {"history_visibility": "shared"}
    assert state[("m.room.guest_access", "")]["content"] == {"guest_access": "can_join"}
    power_levels = state[("m.room.power_levels", "")]["content"]
    assert power_levels["users"] == {alice.user_id: 100}
    assert power_levels["events"]["m.room.power_levels"] == 100
    assert power_levels["events"]["m.room.tombstone"] == 100
    assert (power_levels["invite"], power_levels["kick"], power_levels["ban"]) == (50, 50, 50)
    assert power_levels["state_default"] == 50 and power_levels["events_default"] == 0
    create = state[("m.room.create", "")]["content"]
    assert create == {"room_version": "10", "creator": alice.user_id}
    assert state[("m.room.member", alice.user_id)]["content"]["membership"] == "join"
    assert alice.joined_rooms() == [room_id]


def test_public_chat_preset_and_default_for_public_visibility(
    alice: User, server: RunningHomeserver
) -> None:
    for body in ({"preset": "public_chat"}, {"visibility": "public"}):
        room_id = alice.create_room(**body)
        state = state_map(alice, room_id)
        assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "public"}
        assert state[("m.room.history_visibility", "")]["content"]["history_visibility"] == (
            "shared"
        )
        assert ("m.room.guest_access", "") not in state
    published = server.run_sync(server.homeserver.directory_store.get_room_is_public(room_id))
    assert published is True
    private = alice.create_room(preset="public_chat")
    assert server.run_sync(server.homeserver.directory_store.get_room_is_public(private)) is False


def test_trusted_private_chat_gives_invitees_ops(alice: User, bob: User) -> None:
    room_id = alice.create_room(preset="trusted_private_chat", invite=[bob.user_id], is_direct=True)
    state = state_map(alice, room_id)
    assert state[("m.room.power_levels", "")]["content"]["users"] == {
        alice.user_id: 100,
        bob.user_id: 100,
    }
    invite = state[("m.room.member", bob.user_id)]
    assert invite["content"]["membership"] == "invite"
    assert invite["content"]["is_direct"] is True
    assert invite["sender"] == alice.user_id


def test_v12_creators_are_not_in_power_levels(alice: User, bob: User) -> None:
    room_id = alice.create_room(
        room_version="12", preset="trusted_private_chat", invite=[bob.user_id]
    )
    assert room_id.startswith("!") and ":" not in room_id
    state = state_map(alice, room_id)
    create = state[("m.room.create", "")]
    assert "creator" not in create["content"]
    assert create["content"]["additional_creators"] == [bob.user_id]
    power_levels = state[("m.room.power_levels", "")]["content"]
    assert power_levels["users"] == {}
    assert power_levels["events"]["m.room.tombstone"] == 150


def test_v11_has_no_creator_field(alice: User) -> None:
    room_id = alice.create_room(room_version="11")
    create = state_map(alice, room_id)[("m.room.create", "")]
    assert create["content"] == {"room_version": "11"}


def test_name_topic_alias_initial_state_and_creation_content(
    alice: User, bob: User, server: RunningHomeserver
) -> None:
    room_id = alice.create_room(
        name="The Room",
        topic="Talk here",
        room_alias_name="the-room",
        creation_content={"m.federate": False, "room_version": "1", "type": "m.space"},
        initial_state=[
            {"type": "m.room.join_rules", "content": {"join_rule": "public"}},
            {"type": "org.example.thing", "state_key": "k", "content": {"a": 1}},
        ],
        power_level_content_override={"events_default": 10, "events": {"m.room.name": 20}},
    )
    state = state_map(alice, room_id)
    assert state[("m.room.name", "")]["content"] == {"name": "The Room"}
    assert state[("m.room.topic", "")]["content"]["topic"] == "Talk here"
    assert state[("m.room.topic", "")]["content"]["m.topic"] == {"m.text": [{"body": "Talk here"}]}
    assert state[("m.room.canonical_alias", "")]["content"] == {"alias": "#the-room:hs.test"}
    assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "public"}
    assert state[("org.example.thing", "k")]["content"] == {"a": 1}
    create = state[("m.room.create", "")]["content"]
    # The room version is the request's, never creation_content's.
    assert create["room_version"] == "10" and create["m.federate"] is False
    assert create["type"] == "m.space"
    power_levels = state[("m.room.power_levels", "")]["content"]
    assert power_levels["events_default"] == 10
    # A top-level override replaces the whole key, as Synapse does.
    assert power_levels["events"] == {"m.room.name": 20}
    resolved = bob.ok("GET", f"/directory/room/{quote('#the-room:hs.test')}")
    assert resolved["room_id"] == room_id
    # The alias is usable at once.
    assert bob.join("#the-room:hs.test").status == 200


def test_initial_power_levels_replace_the_defaults(alice: User) -> None:
    content = {"users": {alice.user_id: 100}, "state_default": 100}
    room_id = alice.create_room(initial_state=[{"type": "m.room.power_levels", "content": content}])
    assert state_map(alice, room_id)[("m.room.power_levels", "")]["content"] == content


def test_event_order(alice: User, bob: User) -> None:
    room_id = alice.create_room(
        preset="private_chat", name="n", topic="t", invite=[bob.user_id], room_alias_name="o"
    )
    events = alice.ok("GET", f"/rooms/{quote(room_id)}/messages?dir=f&limit=50")["chunk"]
    assert [e["type"] for e in events] == [
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.canonical_alias",
        "m.room.join_rules",
        "m.room.history_visibility",
        "m.room.guest_access",
        "m.room.name",
        "m.room.topic",
        "m.room.member",
    ]


@pytest.mark.parametrize(
    ("body", "status", "errcode"),
    [
        ({"room_version": "999"}, 400, "M_UNSUPPORTED_ROOM_VERSION"),
        ({"room_version": 10}, 400, "M_BAD_JSON"),
        ({"preset": "party"}, 400, "M_BAD_JSON"),
        ({"visibility": "secret"}, 400, "M_INVALID_PARAM"),
        ({"name": 5}, 400, "M_BAD_JSON"),
        ({"topic": ["x"]}, 400, "M_BAD_JSON"),
        ({"invite": "@bob:hs.test"}, 400, "M_BAD_JSON"),
        ({"invite": ["not a user"]}, 400, "M_INVALID_PARAM"),
        ({"invite_3pid": [{"medium": "email"}]}, 400, "M_UNRECOGNIZED"),
        ({"initial_state": [{"type": "m.x"}]}, 400, "M_BAD_JSON"),
        ({"initial_state": {"type": "m.x"}}, 400, "M_BAD_JSON"),
        ({"creation_content": []}, 400, "M_BAD_JSON"),
        ({"power_level_content_override": {"users": {}}}, 400, "M_INVALID_PARAM"),
        ({"room_alias_name": "has space"}, 400, "M_INVALID_PARAM"),
        ({"room_alias_name": "a:b"}, 400, "M_INVALID_PARAM"),
        ({"is_direct": "yes"}, 400, "M_BAD_JSON"),
        # The creator could not set the join rules: a state that cannot exist.
        (
            {"power_level_content_override": {"state_default": 101}},
            400,
            "M_INVALID_ROOM_STATE",
        ),
        ({"topic": "x" * 70_000}, 413, "M_TOO_LARGE"),
    ],
)
def test_bad_requests_create_nothing(
    alice: User, body: dict[str, Any], status: int, errcode: str
) -> None:
    assert_error(alice.request("POST", "/createRoom", body), status, errcode)
    assert alice.joined_rooms() == []


def test_not_json_and_not_an_object(alice: User) -> None:
    assert_error(alice.request("POST", "/createRoom", b"{nope"), 400, "M_NOT_JSON")
    assert_error(alice.request("POST", "/createRoom", b"[]"), 400, "M_BAD_JSON")


def test_alias_in_use(alice: User) -> None:
    alice.create_room(room_alias_name="taken")
    assert_error(
        alice.request("POST", "/createRoom", {"room_alias_name": "taken"}), 400, "M_ROOM_IN_USE"
    )
    assert len(alice.joined_rooms()) == 1


def test_requires_a_token(alice: User) -> None:
    assert_error(alice.request("POST", "/createRoom", {}, token=False), 401, "M_MISSING_TOKEN")


def test_invite_profile_and_join_profile(alice: User, bob: User) -> None:
    alice.ok("PUT", f"/profile/{quote(alice.user_id)}/displayname", {"displayname": "Alice"})
    bob.ok("PUT", f"/profile/{quote(bob.user_id)}/avatar_url", {"avatar_url": "mxc://hs.test/b"})
    room_id = alice.create_room(invite=[bob.user_id])
    state = state_map(alice, room_id)
    assert state[("m.room.member", alice.user_id)]["content"] == {
        "membership": "join",
        "displayname": "Alice",
    }
    assert state[("m.room.member", bob.user_id)]["content"] == {
        "membership": "invite",
        "displayname": "bob",  # registration's default display name
        "avatar_url": "mxc://hs.test/b",
    }


def test_room_creation_rate_limit(
    tmp_path: Any, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    from tests.integration.harness import start_homeserver
    from tests.integration.rooms_helpers import register, rooms_config

    config = rooms_config(
        tmp_path, db_config, rc_room_creation={"per_second": 0.001, "burst_count": 2}
    )
    running = start_homeserver(config, reactor_thread, run_sync)
    try:
        user = register(running, "limited")
        user.create_room()
        user.create_room()
        body = assert_error(user.request("POST", "/createRoom", {}), 429, "M_LIMIT_EXCEEDED")
        assert body["retry_after_ms"] > 0
        assert len(user.joined_rooms()) == 2
    finally:
        running.stop()
