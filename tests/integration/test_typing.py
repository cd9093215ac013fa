"""Typing notifications over real HTTP, and what /sync reads of them."""

from __future__ import annotations

import time
from typing import Any

from tests.integration.harness import RunningHomeserver
from tests.integration.rooms_helpers import User, assert_error, quote
from tests.integration.streams_helpers import alice, bob, moved, server, shared_room

__all__ = ["alice", "bob", "server"]  # fixtures


def typing_path(room_id: str, user_id: str) -> str:
    return f"/rooms/{quote(room_id)}/typing/{quote(user_id)}"


def typing_events(server: RunningHomeserver, rooms: list[str], since: int | None) -> Any:
    return server.homeserver.typing_handler.get_typing_events(rooms, since)


def position(server: RunningHomeserver) -> int:
    result: int = server.homeserver.typing_handler.current_position()
    return result


def test_start_and_stop_typing(server: RunningHomeserver, alice: User, bob: User) -> None:
    room_id = shared_room(alice, bob)
    start = position(server)
    alice.ok("PUT", typing_path(room_id, alice.user_id), {"typing": True, "timeout": 30000})
    assert position(server) == start + 1
    assert moved(server, bob.user_id, [room_id], "typing", start)
    assert not moved(server, bob.user_id, [room_id], "typing", start + 1)
    event = typing_events(server, [room_id], None)[room_id]
    assert event == {"type": "m.typing", "content": {"user_ids": [alice.user_id]}}
    assert "room_id" not in event
    # Typing again only pushes the timeout back: nothing new to tell anyone.
    alice.ok("PUT", typing_path(room_id, alice.user_id), {"typing": True, "timeout": 30000})
    assert position(server) == start + 1
    bob.ok("PUT", typing_path(room_id, bob.user_id), {"typing": True})
    users = typing_events(server, [room_id], start + 1)[room_id]["content"]["user_ids"]
    assert users == sorted([alice.user_id, bob.user_id])

    # Stopping is a change: an incremental sync sees the shorter list.
    alice.ok("PUT", typing_path(room_id, alice.user_id), {"typing": False})
    after_stop = typing_events(server, [room_id], start + 2)
    assert after_stop[room_id]["content"]["user_ids"] == [bob.user_id]
    bob.ok("PUT", typing_path(room_id, bob.user_id), {"typing": False})
    # An empty list after a token says "nobody types any more"; an initial sync says nothing.
    now = position(server)
    assert typing_events(server, [room_id], now - 1)[room_id]["content"]["user_ids"] == []
    assert typing_events(server, [room_id], None) == {}
    assert typing_events(server, [room_id], now) == {}
    # Stopping when not typing changes nothing.
    bob.ok("PUT", typing_path(room_id, bob.user_id), {"typing": False})
    assert position(server) == now


def test_typing_times_out(server: RunningHomeserver, alice: User, bob: User) -> None:
    room_id = shared_room(alice, bob)
    alice.ok("PUT", typing_path(room_id, alice.user_id), {"typing": True, "timeout": 200})
    started = position(server)
    assert typing_events(server, [room_id], None)[room_id]["content"]["user_ids"]
    deadline = time.monotonic() + 10
    while position(server) == started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert position(server) == started + 1
    assert typing_events(server, [room_id], started)[room_id]["content"]["user_ids"] == []
    assert moved(server, bob.user_id, [room_id], "typing", started)


def test_leaving_stops_typing(server: RunningHomeserver, alice: User, bob: User) -> None:
    room_id = shared_room(alice, bob)
    bob.ok("PUT", typing_path(room_id, bob.user_id), {"typing": True})
    before = position(server)
    bob.ok("POST", f"/rooms/{quote(room_id)}/leave", {})
    assert position(server) == before + 1
    assert typing_events(server, [room_id], before)[room_id]["content"]["user_ids"] == []


def test_typing_only_in_rooms_asked_about(
    server: RunningHomeserver, alice: User, bob: User
) -> None:
    first = shared_room(alice, bob)
    second = alice.create_room()
    alice.ok("PUT", typing_path(second, alice.user_id), {"typing": True})
    assert typing_events(server, [first], None) == {}
    assert set(typing_events(server, [first, second], None)) == {second}


def test_typing_errors(alice: User, bob: User) -> None:
    room_id = alice.create_room()
    # Someone else's typing state.
    assert_error(
        alice.request("PUT", typing_path(room_id, bob.user_id), {"typing": True}),
        403,
        "M_FORBIDDEN",
    )
    # Not joined, or no such room.
    assert_error(
        bob.request("PUT", typing_path(room_id, bob.user_id), {"typing": True}), 403, "M_FORBIDDEN"
    )
    assert_error(
        bob.request("PUT", typing_path("!nope:hs.test", bob.user_id), {"typing": True}),
        403,
        "M_FORBIDDEN",
    )
    path = typing_path(room_id, alice.user_id)
    assert_error(alice.request("PUT", path, {}), 400, "M_BAD_JSON")
    assert_error(alice.request("PUT", path, {"typing": "yes"}), 400, "M_BAD_JSON")
    assert_error(alice.request("PUT", path, {"typing": True, "timeout": "5"}), 400, "M_BAD_JSON")
    assert_error(alice.request("PUT", path, {"typing": True, "timeout": -1}), 400, "M_BAD_JSON")
    assert_error(alice.request("PUT", path, b"[1]"), 400, "M_BAD_JSON")
    assert_error(alice.request("PUT", path, b"nope"), 400, "M_NOT_JSON")
    assert_error(alice.request("PUT", path, {"typing": True}, token=False), 401, "M_MISSING_TOKEN")


def test_typing_under_r0(server: RunningHomeserver, alice: User) -> None:
    room_id = alice.create_room()
    result = server.request(
        "PUT",
        f"/_matrix/client/r0{typing_path(room_id, alice.user_id)}",
        access_token=alice.access_token,
        body={"typing": True},
    )
    assert result.status == 200, result.body
    assert position(server) == 1
