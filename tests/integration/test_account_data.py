"""Account data (global and per room), room tags and ignored users over real HTTP, and
what /sync reads of them."""

from __future__ import annotations

from typing import Any

from tests.integration.harness import RunningHomeserver
from tests.integration.rooms_helpers import User, assert_error, quote
from tests.integration.streams_helpers import alice, bob, moved, server

__all__ = ["alice", "bob", "server"]  # fixtures


def global_path(user: User, data_type: str, user_id: str | None = None) -> str:
    return f"/user/{quote(user_id or user.user_id)}/account_data/{quote(data_type)}"


def room_path(user: User, room_id: str, data_type: str, user_id: str | None = None) -> str:
    return (
        f"/user/{quote(user_id or user.user_id)}/rooms/{quote(room_id)}"
        f"/account_data/{quote(data_type)}"
    )


def tags_path(user: User, room_id: str, tag: str | None = None) -> str:
    path = f"/user/{quote(user.user_id)}/rooms/{quote(room_id)}/tags"
    return path if tag is None else f"{path}/{quote(tag)}"


def sync_global(server: RunningHomeserver, user: User, since: int | None) -> Any:
    handler = server.homeserver.account_data_handler
    return server.run_sync(handler.get_global_account_data(user.user_id, since))


def sync_rooms(server: RunningHomeserver, user: User, since: int | None) -> Any:
    handler = server.homeserver.account_data_handler
    return server.run_sync(handler.get_room_account_data(user.user_id, since))


def position(server: RunningHomeserver) -> int:
    result: int = server.homeserver.account_data_handler.current_position()
    return result


def test_global_account_data(server: RunningHomeserver, alice: User, bob: User) -> None:
    start = position(server)
    assert alice.ok("PUT", global_path(alice, "m.direct"), {"@bob:hs.test": ["!r:hs.test"]}) == {}
    assert alice.ok("GET", global_path(alice, "m.direct")) == {"@bob:hs.test": ["!r:hs.test"]}
    assert position(server) == start + 1
    assert moved(server, alice.user_id, [], "account_data", start)
    assert not moved(server, bob.user_id, [], "account_data", start)

    alice.ok("PUT", global_path(alice, "org.example.a"), {"n": 1})
    middle = position(server)
    alice.ok("PUT", global_path(alice, "org.example.a"), {"n": 2})
    assert sync_global(server, alice, None) == {
        "m.direct": {"@bob:hs.test": ["!r:hs.test"]},
        "org.example.a": {"n": 2},
    }
    assert sync_global(server, alice, middle) == {"org.example.a": {"n": 2}}
    assert sync_global(server, alice, position(server)) == {}
    assert sync_global(server, bob, None) == {}
    # Room account data is not global account data.
    assert sync_rooms(server, alice, None) == {}
    # The spec defines no deletion: an empty object is stored like any other.
    alice.ok("PUT", global_path(alice, "org.example.a"), {})
    assert alice.ok("GET", global_path(alice, "org.example.a")) == {}


def test_room_account_data(server: RunningHomeserver, alice: User) -> None:
    room_id = alice.create_room()
    start = position(server)
    alice.ok("PUT", room_path(alice, room_id, "org.example.r"), {"x": [1, 2]})
    assert alice.ok("GET", room_path(alice, room_id, "org.example.r")) == {"x": [1, 2]}
    # No fallback between room and global data of the same type.
    assert_error(alice.request("GET", global_path(alice, "org.example.r")), 404, "M_NOT_FOUND")
    assert_error(
        alice.request("GET", room_path(alice, "!other:hs.test", "org.example.r")),
        404,
        "M_NOT_FOUND",
    )
    assert sync_rooms(server, alice, start) == {room_id: {"org.example.r": {"x": [1, 2]}}}
    assert sync_rooms(server, alice, position(server)) == {}
    assert moved(server, alice.user_id, [], "account_data", start)


def test_account_data_errors(alice: User, bob: User) -> None:
    room_id = alice.create_room()
    for path in (
        global_path(alice, "a.b", bob.user_id),
        room_path(alice, room_id, "a.b", bob.user_id),
    ):
        assert_error(alice.request("PUT", path, {}), 403, "M_FORBIDDEN")
        assert_error(alice.request("GET", path), 403, "M_FORBIDDEN")
    for path in (global_path(alice, "m.fully_read"), room_path(alice, room_id, "m.push_rules")):
        assert_error(alice.request("PUT", path, {}), 405, "M_BAD_JSON")
    assert_error(alice.request("PUT", global_path(alice, "m.push_rules"), {}), 405, "M_BAD_JSON")
    assert_error(alice.request("GET", global_path(alice, "never.set")), 404, "M_NOT_FOUND")
    assert_error(alice.request("GET", room_path(alice, room_id, "never.set")), 404, "M_NOT_FOUND")
    assert_error(
        alice.request("PUT", room_path(alice, "@not-a-room:hs.test", "a.b"), {}),
        400,
        "M_INVALID_PARAM",
    )
    assert_error(
        alice.request("GET", room_path(alice, "not-a-room", "a.b")), 400, "M_INVALID_PARAM"
    )
    assert_error(alice.request("PUT", global_path(alice, "a.b"), b"nope"), 400, "M_NOT_JSON")
    assert_error(alice.request("PUT", global_path(alice, "a.b"), b"[1]"), 400, "M_BAD_JSON")
    assert_error(
        alice.request("PUT", global_path(alice, "a.b"), {}, token=False), 401, "M_MISSING_TOKEN"
    )
    # m.push_rules reads as the user's push rules; room push rules do not exist.
    assert "global" in alice.ok("GET", global_path(alice, "m.push_rules"))
    assert alice.ok("GET", room_path(alice, room_id, "m.push_rules")) == {}


def test_room_tags(server: RunningHomeserver, alice: User) -> None:
    room_id = alice.create_room()
    assert alice.ok("GET", tags_path(alice, room_id)) == {"tags": {}}
    start = position(server)
    alice.ok("PUT", tags_path(alice, room_id, "m.favourite"), {"order": 0.25})
    alice.ok("PUT", tags_path(alice, room_id, "u.work"), {})
    alice.ok("PUT", tags_path(alice, room_id, "u.edge"), {"order": 1})
    expected = {"m.favourite": {"order": 0.25}, "u.work": {}, "u.edge": {"order": 1}}
    assert alice.ok("GET", tags_path(alice, room_id)) == {"tags": expected}
    # Tags reach /sync as the room's m.tag account data.
    assert sync_rooms(server, alice, start) == {room_id: {"m.tag": {"tags": expected}}}
    assert alice.ok("GET", room_path(alice, room_id, "m.tag")) == {"tags": expected}

    before_delete = position(server)
    alice.ok("DELETE", tags_path(alice, room_id, "u.work"))
    assert set(alice.ok("GET", tags_path(alice, room_id))["tags"]) == {"m.favourite", "u.edge"}
    assert moved(server, alice.user_id, [], "account_data", before_delete)
    # Deleting a tag the room does not have changes nothing.
    unchanged = position(server)
    alice.ok("DELETE", tags_path(alice, room_id, "u.absent"))
    assert sync_rooms(server, alice, unchanged) == {}


def test_tag_errors(alice: User, bob: User) -> None:
    room_id = alice.create_room()
    for order in (-0.1, 1.5, "0.5", True, None):
        assert_error(
            alice.request("PUT", tags_path(alice, room_id, "u.x"), {"order": order}),
            400,
            "M_BAD_JSON",
        )
    assert_error(
        alice.request("PUT", tags_path(alice, room_id, "u." + "x" * 300), {}),
        400,
        "M_INVALID_PARAM",
    )
    other = f"/user/{quote(bob.user_id)}/rooms/{quote(room_id)}/tags"
    assert_error(alice.request("GET", other), 403, "M_FORBIDDEN")
    assert_error(alice.request("PUT", other + "/u.x", {}), 403, "M_FORBIDDEN")
    assert_error(alice.request("DELETE", other + "/u.x"), 403, "M_FORBIDDEN")
    assert_error(alice.request("PUT", tags_path(alice, room_id, "u.x"), b"[]"), 400, "M_BAD_JSON")
    # m.tag written directly must still read as tags.
    assert_error(
        alice.request("PUT", room_path(alice, room_id, "m.tag"), {"tags": 1}), 400, "M_BAD_JSON"
    )


def test_ignored_users(server: RunningHomeserver, alice: User) -> None:
    ignored = server.homeserver.ignored_users
    assert server.run_sync(ignored.get_ignored_users(alice.user_id)) == frozenset()
    content: dict[str, Any] = {
        "ignored_users": {"@bob:hs.test": {}, "@carol:elsewhere.test": {}, alice.user_id: {}}
    }
    alice.ok("PUT", global_path(alice, "m.ignored_user_list"), content)
    # Ignoring oneself means nothing.
    assert server.run_sync(ignored.get_ignored_users(alice.user_id)) == frozenset(
        {"@bob:hs.test", "@carol:elsewhere.test"}
    )
    alice.ok("PUT", global_path(alice, "m.ignored_user_list"), {"ignored_users": {}})
    assert server.run_sync(ignored.get_ignored_users(alice.user_id)) == frozenset()
    bad: dict[str, Any]
    for bad in (
        {},
        {"ignored_users": []},
        {"ignored_users": {"bob": {}}},
        {"ignored_users": {"@bob:hs.test": True}},
    ):
        assert_error(
            alice.request("PUT", global_path(alice, "m.ignored_user_list"), bad), 400, "M_BAD_JSON"
        )
    assert alice.ok("GET", global_path(alice, "m.ignored_user_list")) == {"ignored_users": {}}


def test_account_data_survives_a_restart(server: RunningHomeserver, alice: User) -> None:
    alice.ok("PUT", global_path(alice, "org.example.keep"), {"v": 1})
    handler = server.homeserver.account_data_handler
    last = handler.current_position()
    server.run_sync(handler.store.load_positions())
    # Positions resume after the stored ones, so nothing new hides below an old token.
    assert handler.current_position() == last
    alice.ok("PUT", global_path(alice, "org.example.keep"), {"v": 2})
    assert handler.current_position() == last + 1
