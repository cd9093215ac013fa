"""Sending, redacting and reading events, and upgrading rooms, over real HTTP."""

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


def send_path(room_id: str, txn: str, event_type: str = "m.room.message") -> str:
    return f"/rooms/{quote(room_id)}/send/{event_type}/{txn}"


def get_event(user: User, room_id: str, event_id: str) -> Any:
    return user.request("GET", f"/rooms/{quote(room_id)}/event/{quote(event_id)}")


def test_send_and_read_back(alice: User) -> None:
    room_id = alice.create_room()
    content = {"msgtype": "m.text", "body": "hello"}
    event_id = alice.ok("PUT", send_path(room_id, "t1"), content)["event_id"]
    event = get_event(alice, room_id, event_id).json()
    assert event["content"] == content
    assert event["type"] == "m.room.message" and event["sender"] == alice.user_id
    assert event["room_id"] == room_id and "state_key" not in event


def test_send_is_idempotent_per_transaction(alice: User) -> None:
    room_id = alice.create_room()
    first = alice.ok("PUT", send_path(room_id, "same"), {"body": "a"})["event_id"]
    assert alice.ok("PUT", send_path(room_id, "same"), {"body": "a"})["event_id"] == first
    assert_error(
        alice.request("PUT", send_path(room_id, "same"), {"body": "b"}), 400, "M_INVALID_PARAM"
    )
    # Another device of the same user has its own transaction IDs.
    other = alice.server.request(
        "POST",
        "/_matrix/client/v3/login",
        body={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": "correct horse battery",
        },
    ).json()
    second_device = User(alice.server, alice.user_id, other["access_token"])
    second = second_device.ok("PUT", send_path(room_id, "same"), {"body": "a"})["event_id"]
    assert second != first


def test_transaction_ids_are_scoped_to_the_path(alice: User) -> None:
    first_room = alice.create_room()
    second_room = alice.create_room()
    first = alice.ok("PUT", send_path(first_room, "shared"), {"body": "a"})["event_id"]
    # Same ID, another room or event type: a new request (spec, "Transaction identifiers").
    second = alice.ok("PUT", send_path(second_room, "shared"), {"body": "a"})["event_id"]
    third = alice.ok("PUT", send_path(first_room, "shared", "m.other"), {"body": "a"})["event_id"]
    redaction = alice.ok("PUT", f"/rooms/{quote(first_room)}/redact/{quote(first)}/shared", {})[
        "event_id"
    ]
    assert len({first, second, third, redaction}) == 4
    assert alice.ok("PUT", send_path(second_room, "shared"), {"body": "a"})["event_id"] == second


def test_send_errors(alice: User, bob: User) -> None:
    room_id = alice.create_room()
    assert_error(bob.request("PUT", send_path(room_id, "x"), {"body": "hi"}), 403, "M_FORBIDDEN")
    assert_error(
        alice.request("PUT", send_path("!nope:hs.test", "x"), {"body": "hi"}), 404, "M_NOT_FOUND"
    )
    assert_error(alice.request("PUT", send_path(room_id, "y"), b"[]"), 400, "M_BAD_JSON")
    assert_error(alice.request("PUT", send_path(room_id, "z"), b"{"), 400, "M_NOT_JSON")
    big = {"body": "x" * 70_000}
    assert_error(alice.request("PUT", send_path(room_id, "big"), big), 413, "M_TOO_LARGE")
    long_type = "t" * 256
    assert_error(
        alice.request("PUT", send_path(room_id, "w", long_type), {}), 400, "M_INVALID_PARAM"
    )
    assert_error(
        alice.request("PUT", send_path(room_id, "v"), {"body": "x"}, token=False),
        401,
        "M_MISSING_TOKEN",
    )
    # Events_default above Bob's level.
    public = alice.create_room(
        preset="public_chat", power_level_content_override={"events_default": 10}
    )
    bob.join(public)
    assert_error(bob.request("PUT", send_path(public, "p"), {"body": "x"}), 403, "M_FORBIDDEN")


def test_redact(alice: User, bob: User, carol: User) -> None:
    room_id = alice.create_room(preset="public_chat")
    bob.join(room_id)
    carol.join(room_id)
    message = bob.send(room_id, {"body": "oops", "msgtype": "m.text"})
    # Carol may not redact Bob's message.
    path = f"/rooms/{quote(room_id)}/redact/{quote(message)}"
    assert_error(carol.request("PUT", path + "/c1", {}), 403, "M_FORBIDDEN")
    # Bob may redact his own; the transaction is idempotent too.
    redaction = bob.ok("PUT", path + "/b1", {"reason": "typo"})["event_id"]
    assert bob.ok("PUT", path + "/b1", {"reason": "typo"})["event_id"] == redaction
    event = get_event(alice, room_id, message).json()
    assert event["content"] == {}
    because = event["unsigned"]["redacted_because"]
    assert because["event_id"] == redaction and because["content"]["reason"] == "typo"
    redaction_event = get_event(alice, room_id, redaction).json()
    assert redaction_event["redacts"] == message
    # A moderator may redact others' events.
    other = carol.send(room_id, {"body": "spam"})
    assert alice.ok("PUT", f"/rooms/{quote(room_id)}/redact/{quote(other)}/a1", {})["event_id"]
    assert get_event(bob, room_id, other).json()["content"] == {}
    assert_error(
        alice.request("PUT", f"/rooms/{quote(room_id)}/redact/$nothing/a2", {}), 404, "M_NOT_FOUND"
    )
    assert_error(alice.request("PUT", path + "/a3", {"reason": 5}), 400, "M_BAD_JSON")


def test_get_event_visibility(alice: User, bob: User) -> None:
    room_id = alice.create_room(preset="public_chat")
    secret = alice.send(room_id, {"body": "before bob"})
    assert_error(get_event(bob, room_id, secret), 404, "M_NOT_FOUND")
    bob.join(room_id)
    later = alice.send(room_id, {"body": "after bob joined"})
    assert get_event(bob, room_id, later).status == 200
    bob.membership(room_id, "leave", {})
    after_leave = alice.send(room_id, {"body": "after bob left"})
    assert get_event(bob, room_id, later).status == 200
    assert_error(get_event(bob, room_id, after_leave), 404, "M_NOT_FOUND")
    assert_error(get_event(alice, room_id, "$unknown"), 404, "M_NOT_FOUND")
    other_room = alice.create_room()
    assert_error(get_event(alice, other_room, later), 404, "M_NOT_FOUND")


def test_send_rate_limit(tmp_path: Any, db_config: Any, reactor_thread: Any, run_sync: Any) -> None:
    config = rooms_config(tmp_path, db_config, rc_message={"per_second": 0.001, "burst_count": 3})
    running = start_homeserver(config, reactor_thread, run_sync)
    try:
        user = register(running, "chatty")
        room_id = user.create_room()
        for n in range(3):
            user.ok("PUT", send_path(room_id, f"r{n}"), {"body": str(n)})
        body = assert_error(
            user.request("PUT", send_path(room_id, "r3"), {"body": "3"}), 429, "M_LIMIT_EXCEEDED"
        )
        assert body["retry_after_ms"] > 0
    finally:
        running.stop()


def test_upgrade(alice: User, bob: User) -> None:
    old = alice.create_room(
        preset="public_chat",
        name="Old",
        topic="About",
        room_alias_name="upgrade-me",
        visibility="public",
    )
    bob.join(old)
    alice.membership(old, "ban", {"user_id": "@troll:hs.test", "reason": "trolling"})
    result = alice.request("POST", f"/rooms/{quote(old)}/upgrade", {"new_version": "11"})
    assert result.status == 200, result.body
    new = result.json()["replacement_room"]
    state = {(e["type"], e["state_key"]): e for e in alice.ok("GET", f"/rooms/{quote(new)}/state")}
    create = state[("m.room.create", "")]["content"]
    assert create["room_version"] == "11" and create["predecessor"]["room_id"] == old
    assert state[("m.room.name", "")]["content"] == {"name": "Old"}
    assert state[("m.room.topic", "")]["content"]["topic"] == "About"
    assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "public"}
    assert state[("m.room.canonical_alias", "")]["content"]["alias"] == "#upgrade-me:hs.test"
    assert state[("m.room.member", "@troll:hs.test")]["content"] == {
        "membership": "ban",
        "reason": "trolling",
    }
    assert state[("m.room.power_levels", "")]["content"]["users"] == {alice.user_id: 100}
    tombstone = alice.state(old, "m.room.tombstone").json()
    assert tombstone["replacement_room"] == new
    old_levels = alice.state(old, "m.room.power_levels").json()
    assert old_levels["events_default"] == 50 and old_levels["invite"] == 50
    assert alice.ok("GET", f"/directory/room/{quote('#upgrade-me:hs.test')}")["room_id"] == new
    # Bob can follow the tombstone.
    assert bob.join(new).status == 200
    assert_error(bob.request("PUT", send_path(old, "late"), {"body": "x"}), 403, "M_FORBIDDEN")


def test_upgrade_to_v12(alice: User) -> None:
    old = alice.create_room(room_version="10")
    new = alice.ok("POST", f"/rooms/{quote(old)}/upgrade", {"new_version": "12"})[
        "replacement_room"
    ]
    levels = alice.state(new, "m.room.power_levels").json()
    assert alice.user_id not in levels.get("users", {})


def test_upgrade_errors(alice: User, bob: User) -> None:
    room_id = alice.create_room(preset="public_chat")
    bob.join(room_id)
    path = f"/rooms/{quote(room_id)}/upgrade"
    assert_error(bob.request("POST", path, {"new_version": "11"}), 403, "M_FORBIDDEN")
    assert_error(
        alice.request("POST", path, {"new_version": "99"}), 400, "M_UNSUPPORTED_ROOM_VERSION"
    )
    assert_error(alice.request("POST", path, {}), 400, "M_BAD_JSON")
    assert_error(
        alice.request("POST", "/rooms/!nope:hs.test/upgrade", {"new_version": "11"}),
        404,
        "M_NOT_FOUND",
    )
    assert len(alice.joined_rooms()) == 1
