"""Room state and members over real HTTP: /state, /state/{type}/{key}, /members, /joined_members."""

from __future__ import annotations

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


def test_get_all_state(alice: User, bob: User) -> None:
    room_id = alice.create_room(name="n")
    events = alice.ok("GET", f"/rooms/{quote(room_id)}/state")
    assert isinstance(events, list)
    by_key = {(e["type"], e["state_key"]): e for e in events}
    assert by_key[("m.room.name", "")]["content"] == {"name": "n"}
    for event in events:
        assert event["room_id"] == room_id and event["event_id"].startswith("$")
        assert "age" in event["unsigned"] and "origin_server_ts" in event
    # Not a member: no state.
    assert_error(bob.request("GET", f"/rooms/{quote(room_id)}/state"), 403, "M_FORBIDDEN")
    assert_error(bob.request("GET", "/rooms/!nope:hs.test/state"), 404, "M_NOT_FOUND")


def test_put_and_get_state_event(alice: User) -> None:
    room_id = alice.create_room()
    result = alice.put_state(room_id, "m.room.topic", {"topic": "one"})
    assert result.status == 200
    event_id = result.json()["event_id"]
    assert alice.state(room_id, "m.room.topic").json() == {"topic": "one"}
    # Without the state key segment, and with a trailing slash: the empty state key.
    path = f"/rooms/{quote(room_id)}/state/m.room.topic"
    assert alice.ok("GET", path) == {"topic": "one"}
    assert alice.ok("GET", path + "/") == {"topic": "one"}
    as_event = alice.ok("GET", path + "?format=event")
    assert as_event["event_id"] == event_id and as_event["state_key"] == ""
    assert as_event["type"] == "m.room.topic" and as_event["sender"] == alice.user_id
    # PUT without a state key segment.
    second = alice.ok("PUT", path, {"topic": "two"})["event_id"]
    assert second != event_id
    assert alice.ok("GET", path) == {"topic": "two"}
    # The same content again is no new event (as Synapse).
    assert alice.ok("PUT", path, {"topic": "two"})["event_id"] == second
    # State keys may contain slashes.
    key = "a/b"
    assert alice.put_state(room_id, "org.example.x", {"v": 1}, state_key=key).status == 200
    assert alice.state(room_id, "org.example.x", key).json() == {"v": 1}
    assert_error(alice.request("GET", path + "?format=xml"), 400, "M_INVALID_PARAM")


def test_state_errors(alice: User, bob: User) -> None:
    room_id = alice.create_room(preset="public_chat")
    assert_error(alice.state(room_id, "m.room.topic"), 404, "M_NOT_FOUND")
    assert_error(alice.state(room_id, "m.room.member", "@nobody:hs.test"), 404, "M_NOT_FOUND")
    assert_error(bob.state(room_id, "m.room.join_rules"), 403, "M_FORBIDDEN")
    assert_error(bob.put_state(room_id, "m.room.topic", {"topic": "x"}), 403, "M_FORBIDDEN")
    bob.join(room_id)
    # Bob is a member but below state_default.
    body = assert_error(bob.put_state(room_id, "m.room.topic", {"topic": "x"}), 403, "M_FORBIDDEN")
    assert body["error"]
    assert_error(
        alice.put_state("!nope:hs.test", "m.room.topic", {"topic": "x"}), 404, "M_NOT_FOUND"
    )
    path = f"/rooms/{quote(room_id)}/state/m.room.topic/"
    assert_error(alice.request("PUT", path, b"[1]"), 400, "M_BAD_JSON")
    assert_error(alice.request("PUT", path, b"nope"), 400, "M_NOT_JSON")
    big = {"topic": "x" * 70_000}
    assert_error(alice.put_state(room_id, "m.room.topic", big), 413, "M_TOO_LARGE")
    long_key = "k" * 256
    assert_error(
        alice.put_state(room_id, "org.example.x", {}, state_key=long_key), 400, "M_INVALID_PARAM"
    )
    # m.room.canonical_alias must name aliases of this room.
    assert_error(
        alice.put_state(room_id, "m.room.canonical_alias", {"alias": "#nope:hs.test"}),
        400,
        "M_BAD_ALIAS",
    )


def test_former_member_sees_state_at_departure(alice: User, bob: User) -> None:
    room_id = alice.create_room(preset="public_chat", name="before")
    bob.join(room_id)
    bob.membership(room_id, "leave", {})
    alice.put_state(room_id, "m.room.name", {"name": "after"})
    assert bob.state(room_id, "m.room.name").json() == {"name": "before"}
    names = [
        e["content"]
        for e in bob.ok("GET", f"/rooms/{quote(room_id)}/state")
        if e["type"] == "m.room.name"
    ]
    assert names == [{"name": "before"}]
    members = bob.ok("GET", f"/rooms/{quote(room_id)}/members")["chunk"]
    assert {m["state_key"]: m["content"]["membership"] for m in members} == {
        alice.user_id: "join",
        bob.user_id: "leave",
    }


def test_world_readable_state(alice: User, bob: User) -> None:
    room_id = alice.create_room(
        initial_state=[
            {
                "type": "m.room.history_visibility",
                "content": {"history_visibility": "world_readable"},
            }
        ],
        name="open",
    )
    assert bob.state(room_id, "m.room.name").json() == {"name": "open"}


def test_member_state_put_changes_membership(alice: User, bob: User) -> None:
    room_id = alice.create_room()
    result = alice.put_state(room_id, "m.room.member", {"membership": "invite"}, bob.user_id)
    assert result.status == 200
    result = bob.put_state(
        room_id, "m.room.member", {"membership": "join", "displayname": "B"}, bob.user_id
    )
    assert result.status == 200
    assert alice.state(room_id, "m.room.member", bob.user_id).json() == {
        "membership": "join",
        "displayname": "B",
    }
    assert_error(
        alice.put_state(room_id, "m.room.member", {"membership": "dance"}, bob.user_id),
        400,
        "M_BAD_JSON",
    )
    assert_error(
        alice.put_state(room_id, "m.room.member", {"membership": "invite"}, "nobody"),
        400,
        "M_INVALID_PARAM",
    )


def test_members_and_filters(alice: User, bob: User, carol: User) -> None:
    room_id = alice.create_room(preset="public_chat", invite=[carol.user_id])
    bob.join(room_id)
    path = f"/rooms/{quote(room_id)}/members"

    def members(query: str = "") -> dict[str, str]:
        chunk = alice.ok("GET", path + query)["chunk"]
        assert all(e["type"] == "m.room.member" for e in chunk)
        return {e["state_key"]: e["content"]["membership"] for e in chunk}

    assert members() == {alice.user_id: "join", bob.user_id: "join", carol.user_id: "invite"}
    assert members("?membership=join") == {alice.user_id: "join", bob.user_id: "join"}
    assert members("?not_membership=join") == {carol.user_id: "invite"}
    assert members("?membership=leave") == {}
    assert_error(alice.request("GET", path + "?membership=dancing"), 400, "M_INVALID_PARAM")
    assert_error(carol.request("GET", path), 403, "M_FORBIDDEN")
    assert_error(alice.request("GET", "/rooms/!nope:hs.test/members"), 404, "M_NOT_FOUND")


def test_joined_members(alice: User, bob: User, carol: User) -> None:
    alice.ok("PUT", f"/profile/{quote(alice.user_id)}/displayname", {"displayname": "Alice"})
    alice.ok(
        "PUT", f"/profile/{quote(alice.user_id)}/avatar_url", {"avatar_url": "mxc://hs.test/a"}
    )
    room_id = alice.create_room(preset="public_chat", invite=[carol.user_id])
    bob.join(room_id)
    joined = alice.ok("GET", f"/rooms/{quote(room_id)}/joined_members")["joined"]
    assert joined == {
        alice.user_id: {"display_name": "Alice", "avatar_url": "mxc://hs.test/a"},
        bob.user_id: {"display_name": "bob", "avatar_url": None},
    }
    assert_error(
        carol.request("GET", f"/rooms/{quote(room_id)}/joined_members"), 403, "M_FORBIDDEN"
    )
    assert_error(alice.request("GET", "/rooms/!nope:hs.test/joined_members"), 404, "M_NOT_FOUND")
