"""``POST /rooms/{roomId}/read_markers`` over real HTTP."""

from __future__ import annotations

from typing import Any

from tests.integration.harness import RunningHomeserver
from tests.integration.rooms_helpers import User, assert_error, quote
from tests.integration.streams_helpers import alice, bob, moved, server, shared_room

__all__ = ["alice", "bob", "server"]  # fixtures


def markers_path(room_id: str) -> str:
    return f"/rooms/{quote(room_id)}/read_markers"


def fully_read(user: User, room_id: str) -> Any:
    path = f"/user/{quote(user.user_id)}/rooms/{quote(room_id)}/account_data/m.fully_read"
    return user.request("GET", path)


def test_markers_and_receipts_in_one_call(
    server: RunningHomeserver, alice: User, bob: User
) -> None:
    room_id = shared_room(alice, bob)
    first = alice.send(room_id, {"body": "1"})
    second = alice.send(room_id, {"body": "2"})
    account_data = server.homeserver.account_data_handler
    start = account_data.current_position()
    body = {"m.fully_read": first, "m.read": second, "m.read.private": first}
    assert bob.ok("POST", markers_path(room_id), body) == {}
    assert fully_read(bob, room_id).json() == {"event_id": first}
    assert moved(server, bob.user_id, [], "account_data", start)
    rooms = server.run_sync(account_data.get_room_account_data(bob.user_id, start))
    assert rooms == {room_id: {"m.fully_read": {"event_id": first}}}
    receipts = server.run_sync(
        server.homeserver.receipts_handler.get_receipt_events([room_id], None, bob.user_id)
    )[room_id]["content"]
    assert bob.user_id in receipts[second]["m.read"]
    assert bob.user_id in receipts[first]["m.read.private"]

    # The marker only moves forward.
    bob.ok("POST", markers_path(room_id), {"m.fully_read": second})
    bob.ok("POST", markers_path(room_id), {"m.fully_read": first})
    assert fully_read(bob, room_id).json() == {"event_id": second}
    # Unknown receipt types are ignored (they are extensible), not refused.
    assert bob.ok("POST", markers_path(room_id), {"m.unknown": second}) == {}


def test_read_marker_errors(alice: User, bob: User) -> None:
    room_id = alice.create_room()
    event_id = alice.send(room_id, {"body": "x"})
    assert_error(
        bob.request("POST", markers_path(room_id), {"m.fully_read": event_id}), 403, "M_FORBIDDEN"
    )
    assert_error(
        alice.request("POST", markers_path(room_id), {"m.fully_read": "$missing:hs.test"}),
        404,
        "M_NOT_FOUND",
    )
    for bad in (5, "not-an-event", ["$x"]):
        assert_error(
            alice.request("POST", markers_path(room_id), {"m.read": bad}), 400, "M_BAD_JSON"
        )
    assert_error(alice.request("POST", markers_path(room_id), b"nope"), 400, "M_NOT_JSON")
    # The marker cannot be written as account data directly.
    path = f"/user/{quote(alice.user_id)}/rooms/{quote(room_id)}/account_data/m.fully_read"
    assert_error(alice.request("PUT", path, {"event_id": event_id}), 405, "M_BAD_JSON")
    assert_error(fully_read(alice, room_id), 404, "M_NOT_FOUND")
