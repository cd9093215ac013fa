"""Read receipts over real HTTP, and the m.receipt events /sync reads."""

from __future__ import annotations

from typing import Any

from storage.receipts import Receipt
from tests.integration.harness import RunningHomeserver
from tests.integration.rooms_helpers import User, assert_error, quote
from tests.integration.streams_helpers import alice, bob, moved, server, shared_room

__all__ = ["alice", "bob", "server"]  # fixtures


def receipt_path(room_id: str, event_id: str, receipt_type: str = "m.read") -> str:
    return f"/rooms/{quote(room_id)}/receipt/{receipt_type}/{quote(event_id)}"


def receipt_events(
    server: RunningHomeserver, rooms: list[str], since: int | None, user_id: str
) -> Any:
    handler = server.homeserver.receipts_handler
    return server.run_sync(handler.get_receipt_events(rooms, since, user_id))


def position(server: RunningHomeserver) -> int:
    result: int = server.homeserver.receipts_handler.current_position()
    return result


def test_read_receipt_reaches_the_room(server: RunningHomeserver, alice: User, bob: User) -> None:
    room_id = shared_room(alice, bob)
    event_id = alice.send(room_id, {"msgtype": "m.text", "body": "hi"})
    start = position(server)
    assert bob.ok("POST", receipt_path(room_id, event_id), {}) == {}
    assert position(server) == start + 1
    assert moved(server, alice.user_id, [room_id], "receipts", start)
    assert not moved(server, alice.user_id, [room_id], "receipts", start + 1)

    events = receipt_events(server, [room_id], None, alice.user_id)
    event = events[room_id]
    assert event["type"] == "m.receipt" and "room_id" not in event
    data = event["content"][event_id]["m.read"][bob.user_id]
    assert isinstance(data["ts"], int) and "thread_id" not in data
    # Only what changed after a position; nothing after the newest.
    assert receipt_events(server, [room_id], start, alice.user_id) == events
    assert receipt_events(server, [room_id], start + 1, alice.user_id) == {}
    # Rooms not asked about are not read.
    assert receipt_events(server, [alice.create_room()], None, alice.user_id) == {}


def test_receipts_only_move_forward(server: RunningHomeserver, alice: User, bob: User) -> None:
    room_id = shared_room(alice, bob)
    first = alice.send(room_id, {"body": "1"})
    second = alice.send(room_id, {"body": "2"})
    bob.ok("POST", receipt_path(room_id, second), {})
    after_second = position(server)
    # An older event, or the same one again: accepted, nothing moves.
    bob.ok("POST", receipt_path(room_id, first), {})
    bob.ok("POST", receipt_path(room_id, second), {})
    assert not moved(server, alice.user_id, [room_id], "receipts", after_second)
    assert receipt_events(server, [room_id], after_second, alice.user_id) == {}
    content = receipt_events(server, [room_id], None, bob.user_id)[room_id]["content"]
    assert list(content) == [second]


def test_private_receipts_only_to_their_owner(
    server: RunningHomeserver, alice: User, bob: User
) -> None:
    room_id = shared_room(alice, bob)
    event_id = alice.send(room_id, {"body": "secret"})
    bob.ok("POST", receipt_path(room_id, event_id, "m.read.private"), {})
    mine = receipt_events(server, [room_id], None, bob.user_id)
    assert bob.user_id in mine[room_id]["content"][event_id]["m.read.private"]
    assert receipt_events(server, [room_id], None, alice.user_id) == {}


def test_threaded_receipts(server: RunningHomeserver, alice: User, bob: User) -> None:
    room_id = shared_room(alice, bob)
    root = alice.send(room_id, {"body": "root"})
    reply = alice.send(
        room_id,
        {"body": "in thread", "m.relates_to": {"rel_type": "m.thread", "event_id": root}},
    )
    main = alice.send(room_id, {"body": "main"})
    bob.ok("POST", receipt_path(room_id, reply), {"thread_id": root})
    bob.ok("POST", receipt_path(room_id, main), {"thread_id": "main"})
    bob.ok("POST", receipt_path(room_id, root), {"thread_id": root})  # the root is in its thread
    bob.ok("POST", receipt_path(room_id, main), {})  # unthreaded: its own slot
    content = receipt_events(server, [room_id], None, alice.user_id)[room_id]["content"]
    assert content[reply]["m.read"][bob.user_id]["thread_id"] == root
    # The unthreaded receipt on the same event wins over the threaded one (MSC4102).
    assert "thread_id" not in content[main]["m.read"][bob.user_id]

    # An event outside the thread named, or a threaded event said to be in "main".
    assert_error(
        bob.request("POST", receipt_path(room_id, main), {"thread_id": root}),
        400,
        "M_INVALID_PARAM",
    )
    assert_error(
        bob.request("POST", receipt_path(room_id, reply), {"thread_id": "main"}),
        400,
        "M_INVALID_PARAM",
    )
    for bad in ("", 5, None):
        assert_error(
            bob.request("POST", receipt_path(room_id, main), {"thread_id": bad}),
            400,
            "M_INVALID_PARAM",
        )


def test_receipt_listeners_hear_of_moves(server: RunningHomeserver, alice: User, bob: User) -> None:
    heard: list[Receipt] = []

    async def listener(receipt: Receipt) -> None:
        heard.append(receipt)

    server.homeserver.receipts_handler.add_receipt_listener(listener)
    room_id = shared_room(alice, bob)
    event_id = alice.send(room_id, {"body": "x"})
    bob.ok("POST", receipt_path(room_id, event_id, "m.read.private"), {})
    bob.ok("POST", receipt_path(room_id, event_id, "m.read.private"), {})  # no move
    assert [(r.user_id, r.receipt_type, r.event_id) for r in heard] == [
        (bob.user_id, "m.read.private", event_id)
    ]
    assert heard[0].event_stream_ordering > 0


def test_fully_read_through_the_receipt_endpoint(
    server: RunningHomeserver, alice: User, bob: User
) -> None:
    room_id = shared_room(alice, bob)
    event_id = alice.send(room_id, {"body": "x"})
    before = position(server)
    bob.ok("POST", receipt_path(room_id, event_id, "m.fully_read"), {})
    # A marker, not a receipt: it lands in room account data, not under m.receipt.
    assert receipt_events(server, [room_id], before, bob.user_id) == {}
    marker = bob.ok(
        "GET", f"/user/{quote(bob.user_id)}/rooms/{quote(room_id)}/account_data/m.fully_read"
    )
    assert marker == {"event_id": event_id}
    assert_error(
        bob.request("POST", receipt_path(room_id, event_id, "m.fully_read"), {"thread_id": "main"}),
        400,
        "M_INVALID_PARAM",
    )


def test_receipt_errors(server: RunningHomeserver, alice: User, bob: User) -> None:
    room_id = alice.create_room()
    event_id = alice.send(room_id, {"body": "x"})
    assert_error(
        alice.request("POST", receipt_path(room_id, event_id, "m.bogus"), {}),
        400,
        "M_INVALID_PARAM",
    )
    assert_error(
        alice.request("POST", receipt_path(room_id, "notanid"), {}), 400, "M_INVALID_PARAM"
    )
    # Not in the room (or no such room).
    assert_error(bob.request("POST", receipt_path(room_id, event_id), {}), 403, "M_FORBIDDEN")
    assert_error(
        bob.request("POST", receipt_path("!nope:hs.test", event_id), {}), 403, "M_FORBIDDEN"
    )
    # No such event, or one of another room.
    assert_error(
        alice.request("POST", receipt_path(room_id, "$missing:hs.test"), {}), 404, "M_NOT_FOUND"
    )
    other_event = alice.send(alice.create_room(), {"body": "elsewhere"})
    assert_error(alice.request("POST", receipt_path(room_id, other_event), {}), 404, "M_NOT_FOUND")
    assert_error(alice.request("POST", receipt_path(room_id, event_id), b"nope"), 400, "M_NOT_JSON")
    assert_error(alice.request("POST", receipt_path(room_id, event_id), b"[]"), 400, "M_BAD_JSON")
    # A receipt with no body at all is accepted, as older clients send it.
    assert alice.request("POST", receipt_path(room_id, event_id), b"").status == 200
    content = receipt_events(server, [room_id], None, alice.user_id)[room_id]["content"]
    assert alice.user_id in content[event_id]["m.read"]
