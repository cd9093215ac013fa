"""Membership over real HTTP: join, invite, leave, forget, kick, ban, unban, knock."""

from __future__ import annotations

from typing import Any

from tests.integration.harness import start_homeserver
from tests.integration.rooms_helpers import (
    User,
    alice,
    assert_error,
    bob,
    carol,
    quote,
    register,
    rooms_config,
    server,
)

__all__ = ["alice", "bob", "carol", "server"]  # fixtures


def member(user: User, room_id: str, user_id: str) -> dict[str, Any]:
    result = user.state(room_id, "m.room.member", user_id)
    assert result.status == 200, result.body
    content: dict[str, Any] = result.json()
    return content


def test_join_public_room_by_id_and_alias(alice: User, bob: User, carol: User) -> None:
    room_id = alice.create_room(preset="public_chat", room_alias_name="pub")
    result = bob.join(room_id)
    assert result.status == 200 and result.json() == {"room_id": room_id}
    assert bob.joined_rooms() == [room_id]
    result = carol.join("#pub:hs.test")
    assert result.json() == {"room_id": room_id}
    result = carol.request("POST", f"/rooms/{quote(room_id)}/join", {"reason": "hello"})
    assert result.status == 200
    assert member(alice, room_id, carol.user_id) == {
        "membership": "join",
        "reason": "hello",
        "displayname": "carol",  # registration's default display name
    }


def test_join_content_carries_the_profile(alice: User, bob: User) -> None:
    bob.ok("PUT", f"/profile/{quote(bob.user_id)}/displayname", {"displayname": "Bobby"})
    room_id = alice.create_room(preset="public_chat")
    bob.join(room_id)
    assert member(alice, room_id, bob.user_id) == {"membership": "join", "displayname": "Bobby"}


def test_invite_only_room(alice: User, bob: User, carol: User) -> None:
    room_id = alice.create_room(preset="private_chat")
    body = assert_error(bob.join(room_id), 403, "M_FORBIDDEN")
    assert "invite" in body["error"]
    assert (
        alice.membership(room_id, "invite", {"user_id": bob.user_id, "reason": "r"}).status == 200
    )
    assert member(alice, room_id, bob.user_id)["membership"] == "invite"
    assert member(alice, room_id, bob.user_id)["reason"] == "r"
    # Only members invite; an invited user is not one yet.
    assert_error(bob.membership(room_id, "invite", {"user_id": carol.user_id}), 403, "M_FORBIDDEN")
    assert bob.join(room_id).status == 200
    # Inviting someone already joined is refused by the auth rules.
    assert_error(alice.membership(room_id, "invite", {"user_id": bob.user_id}), 403, "M_FORBIDDEN")


def test_invite_bad_input(alice: User) -> None:
    room_id = alice.create_room()
    assert_error(alice.membership(room_id, "invite", {}), 400, "M_MISSING_PARAM")
    assert_error(alice.membership(room_id, "invite", {"user_id": "bob"}), 400, "M_INVALID_PARAM")
    assert_error(alice.membership(room_id, "invite", {"user_id": 5}), 400, "M_INVALID_PARAM")
    third_party = {"id_server": "id.example", "medium": "email", "address": "a@b.c"}
    assert_error(alice.membership(room_id, "invite", third_party), 400, "M_UNRECOGNIZED")
    assert_error(
        alice.membership(room_id, "invite", {"user_id": "@x:hs.test", "reason": 1}),
        400,
        "M_BAD_JSON",
    )
    assert_error(
        alice.membership("!nowhere:hs.test", "invite", {"user_id": "@x:hs.test"}),
        404,
        "M_NOT_FOUND",
    )


def test_leave_and_forget(alice: User, bob: User) -> None:
    room_id = alice.create_room(preset="public_chat")
    bob.join(room_id)
    # Forgetting a room one is still in is refused.
    assert_error(bob.membership(room_id, "forget", {}), 400, "M_UNKNOWN")
    assert bob.membership(room_id, "leave", {"reason": "bye"}).status == 200
    assert bob.joined_rooms() == []
    assert member(alice, room_id, bob.user_id) == {"membership": "leave", "reason": "bye"}
    assert bob.request("POST", f"/rooms/{quote(room_id)}/forget", b"").status == 200
    # Leaving again: the auth rules refuse a leave from someone not in the room.
    assert_error(bob.membership(room_id, "leave", {}), 403, "M_FORBIDDEN")
    assert_error(bob.membership("!unknown:hs.test", "leave", {}), 404, "M_NOT_FOUND")
    assert_error(bob.membership("!unknown:hs.test", "forget", {}), 404, "M_NOT_FOUND")
    # Rejoining works after forgetting.
    assert bob.join(room_id).status == 200


def test_reject_invite(alice: User, bob: User) -> None:
    room_id = alice.create_room(invite=[bob.user_id])
    assert bob.membership(room_id, "leave", {}).status == 200
    assert member(alice, room_id, bob.user_id)["membership"] == "leave"


def test_kick(alice: User, bob: User, carol: User) -> None:
    room_id = alice.create_room(preset="public_chat")
    bob.join(room_id)
    carol.join(room_id)
    # Carol has no power to kick.
    assert_error(carol.membership(room_id, "kick", {"user_id": bob.user_id}), 403, "M_FORBIDDEN")
    result = alice.membership(room_id, "kick", {"user_id": bob.user_id, "reason": "spam"})
    assert result.status == 200
    kicked = alice.ok(
        "GET", f"/rooms/{quote(room_id)}/state/m.room.member/{quote(bob.user_id)}?format=event"
    )
    assert kicked["sender"] == alice.user_id
    assert kicked["content"] == {"membership": "leave", "reason": "spam"}
    body = assert_error(
        alice.membership(room_id, "kick", {"user_id": bob.user_id}), 403, "M_FORBIDDEN"
    )
    assert "not in the room" in body["error"]
    assert_error(alice.membership(room_id, "kick", {}), 400, "M_MISSING_PARAM")


def test_ban_and_unban(alice: User, bob: User, carol: User) -> None:
    room_id = alice.create_room(preset="public_chat")
    bob.join(room_id)
    carol.join(room_id)
    assert_error(carol.membership(room_id, "ban", {"user_id": bob.user_id}), 403, "M_FORBIDDEN")
    assert alice.membership(room_id, "ban", {"user_id": bob.user_id, "reason": "no"}).status == 200
    assert member(alice, room_id, bob.user_id) == {"membership": "ban", "reason": "no"}
    assert_error(bob.join(room_id), 403, "M_FORBIDDEN")
    assert_error(alice.membership(room_id, "invite", {"user_id": bob.user_id}), 403, "M_BAD_STATE")
    # Users who never joined can be banned pre-emptively.
    assert alice.membership(room_id, "ban", {"user_id": "@stranger:hs.test"}).status == 200
    assert_error(carol.membership(room_id, "unban", {"user_id": bob.user_id}), 403, "M_FORBIDDEN")
    assert alice.membership(room_id, "unban", {"user_id": bob.user_id}).status == 200
    assert member(alice, room_id, bob.user_id)["membership"] == "leave"
    assert_error(alice.membership(room_id, "unban", {"user_id": bob.user_id}), 403, "M_BAD_STATE")
    assert bob.join(room_id).status == 200


def test_knock(alice: User, bob: User) -> None:
    room_id = alice.create_room(
        initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}],
        room_alias_name="knocky",
    )
    result = bob.request("POST", f"/knock/{quote('#knocky:hs.test')}", {"reason": "let me in"})
    assert result.status == 200 and result.json() == {"room_id": room_id}
    assert member(alice, room_id, bob.user_id) == {
        "membership": "knock",
        "reason": "let me in",
        "displayname": "bob",
    }
    # A knocking user is no member: they cannot join, but can be invited in.
    assert_error(bob.join(room_id), 403, "M_FORBIDDEN")
    assert alice.membership(room_id, "invite", {"user_id": bob.user_id}).status == 200
    assert bob.join(room_id).status == 200
    # No knocking on rooms that do not allow it, nor before room version 7.
    public = alice.create_room(preset="public_chat")
    assert_error(bob.request("POST", f"/knock/{quote(public)}", {}), 403, "M_FORBIDDEN")
    old = alice.create_room(
        room_version="6",
        initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}],
    )
    assert_error(bob.request("POST", f"/knock/{quote(old)}", {}), 403, "M_FORBIDDEN")


def test_join_errors(alice: User, bob: User) -> None:
    assert_error(bob.join("#nothing:hs.test"), 404, "M_NOT_FOUND")
    assert_error(bob.join("!nothing:hs.test"), 404, "M_NOT_FOUND")
    assert_error(bob.join("nothing"), 400, "M_INVALID_PARAM")
    assert_error(bob.join("#bad"), 400, "M_INVALID_PARAM")
    room_id = alice.create_room(preset="public_chat")
    assert_error(
        bob.request("POST", f"/rooms/{quote(room_id)}/join", {"reason": 3}), 400, "M_BAD_JSON"
    )
    assert_error(bob.request("POST", f"/rooms/{quote(room_id)}/join", b"{"), 400, "M_NOT_JSON")
    assert bob.joined_rooms() == []


def test_restricted_join(alice: User, bob: User, carol: User) -> None:
    space = alice.create_room(preset="public_chat")
    bob.join(space)
    room_id = alice.create_room(
        room_version="10",
        initial_state=[
            {
                "type": "m.room.join_rules",
                "content": {
                    "join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": space}],
                },
            }
        ],
    )
    assert bob.join(room_id).status == 200
    joined = member(alice, room_id, bob.user_id)
    assert joined["join_authorised_via_users_server"] == alice.user_id
    assert_error(carol.join(room_id), 403, "M_FORBIDDEN")


def test_joined_rooms(alice: User, bob: User) -> None:
    first = alice.create_room(preset="public_chat")
    second = alice.create_room(preset="public_chat")
    bob.join(first)
    bob.join(second)
    assert sorted(bob.joined_rooms()) == sorted([first, second])
    bob.membership(first, "leave", {})
    assert bob.joined_rooms() == [second]
    assert_error(bob.request("GET", "/joined_rooms", token=False), 401, "M_MISSING_TOKEN")


def test_join_rate_limit(tmp_path: Any, db_config: Any, reactor_thread: Any, run_sync: Any) -> None:
    config = rooms_config(
        tmp_path, db_config, rc_joins={"local": {"per_second": 0.001, "burst_count": 2}}
    )
    running = start_homeserver(config, reactor_thread, run_sync)
    try:
        owner = register(running, "owner")
        joiner = register(running, "joiner")
        rooms = [owner.create_room(preset="public_chat") for _ in range(3)]
        assert joiner.join(rooms[0]).status == 200
        assert joiner.join(rooms[1]).status == 200
        assert_error(joiner.join(rooms[2]), 429, "M_LIMIT_EXCEEDED")
        assert sorted(joiner.joined_rooms()) == sorted(rooms[:2])
    finally:
        running.stop()
