"""Unread counts in /sync and GET /notifications over real HTTP, on SQLite and PostgreSQL:
two users, messages and mentions, receipts dropping the counts, threads."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.rooms_helpers import User, alice, assert_error, bob, carol, quote, server

__all__ = ["alice", "bob", "carol", "server"]

THREADS_FILTER = json.dumps({"room": {"timeline": {"unread_thread_notifications": True}}})


def counts(user: User, room_id: str) -> dict[str, Any]:
    body = user.ok("GET", f"/sync?filter={quote(THREADS_FILTER)}")
    room: dict[str, Any] = body["rooms"]["join"][room_id]
    return {
        "main": room["unread_notifications"],
        "threads": room.get("unread_thread_notifications", {}),
    }


def unread(notifications: int, highlights: int = 0) -> dict[str, int]:
    return {"notification_count": notifications, "highlight_count": highlights}


def text(body: str, **extra: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, **extra}


def receipt(user: User, room_id: str, event_id: str, **body: Any) -> None:
    path = f"/rooms/{quote(room_id)}/receipt/m.read/{quote(event_id)}"
    assert user.ok("POST", path, body) == {}


def shared_room(owner: User, *others: User) -> str:
    room_id = owner.create_room(preset="public_chat")
    for other in others:
        assert other.join(room_id).status == 200
    return room_id


def test_messages_and_mentions_count_until_read(alice: User, bob: User, carol: User) -> None:
    room_id = shared_room(alice, bob, carol)
    first = alice.send(room_id, text("hello"))
    alice.send(room_id, text("anyone?"))
    assert counts(bob, room_id)["main"] == unread(2)
    # The sender is never notified of their own events.
    assert counts(alice, room_id)["main"] == unread(0)
    mention = alice.send(room_id, text("bob!", **{"m.mentions": {"user_ids": [bob.user_id]}}))
    assert counts(bob, room_id)["main"] == unread(3, 1)
    assert counts(carol, room_id)["main"] == unread(3)
    # Notices and reactions do not count.
    alice.send(room_id, {"msgtype": "m.notice", "body": "bot"})
    reaction = {"m.relates_to": {"rel_type": "m.annotation", "event_id": first, "key": "x"}}
    alice.send(room_id, reaction, "m.reaction")
    assert counts(bob, room_id)["main"] == unread(3, 1)

    receipt(bob, room_id, first)
    assert counts(bob, room_id)["main"] == unread(2, 1)
    receipt(bob, room_id, mention)
    assert counts(bob, room_id)["main"] == unread(0)
    assert counts(carol, room_id)["main"] == unread(3)
    # A private receipt further ahead counts too.
    path = f"/rooms/{quote(room_id)}/receipt/m.read.private/{quote(mention)}"
    assert carol.ok("POST", path, {}) == {}
    assert counts(carol, room_id)["main"] == unread(0)
    later = alice.send(room_id, text("more"))
    assert counts(bob, room_id)["main"] == unread(1)
    assert later


def test_one_to_one_room_mentions_and_room_mentions(alice: User, bob: User) -> None:
    room_id = shared_room(alice, bob)
    alice.send(room_id, text("hi"))
    assert counts(bob, room_id)["main"] == unread(1)
    # @room needs the sender's "room" notification level (50): Bob has 0, Alice 100.
    bob.send(room_id, text("@room", **{"m.mentions": {"room": True}}))
    assert counts(alice, room_id)["main"] == unread(1, 0)
    alice.send(room_id, text("@room", **{"m.mentions": {"room": True}}))
    assert counts(bob, room_id)["main"] == unread(2, 1)


def test_redaction_drops_the_count(alice: User, bob: User) -> None:
    room_id = shared_room(alice, bob)
    event_id = alice.send(room_id, text("oops"))
    assert counts(bob, room_id)["main"] == unread(1)
    path = f"/rooms/{quote(room_id)}/redact/{quote(event_id)}/r1"
    alice.ok("PUT", path, {})
    assert counts(bob, room_id)["main"] == unread(0)


def test_push_rules_change_what_counts(alice: User, bob: User) -> None:
    room_id = shared_room(alice, bob)
    rule = f"/pushrules/global/room/{quote(room_id)}"
    assert bob.ok("PUT", rule, {"actions": []}) == {}
    alice.send(room_id, text("muted"))
    assert counts(bob, room_id)["main"] == unread(0)
    assert bob.ok("DELETE", rule) == {}
    content_rule = {"pattern": "cake", "actions": ["notify", {"set_tweak": "highlight"}]}
    assert bob.ok("PUT", "/pushrules/global/content/cake", content_rule) == {}
    alice.send(room_id, text("there is CAKE here"))
    assert counts(bob, room_id)["main"] == unread(1, 1)
    master = "/pushrules/global/override/.m.rule.master/enabled"
    assert bob.ok("PUT", master, {"enabled": True}) == {}
    alice.send(room_id, text("cake again"))
    assert counts(bob, room_id)["main"] == unread(1, 1)


def test_threads_count_apart(alice: User, bob: User) -> None:
    room_id = shared_room(alice, bob)
    root = alice.send(room_id, text("root"))
    in_thread = {"m.relates_to": {"rel_type": "m.thread", "event_id": root}}
    first_reply = alice.send(room_id, text("reply 1", **in_thread))
    alice.send(room_id, text("reply 2", **in_thread))
    # A reaction to a threaded event is "part of" the thread, but reactions do not notify.
    after = counts(bob, room_id)
    assert after["main"] == unread(1)
    assert after["threads"] == {root: unread(2)}
    # Without asking for thread counts, the room's counts are still there.
    plain = bob.ok("GET", "/sync")["rooms"]["join"][room_id]
    assert "unread_thread_notifications" not in plain

    # A threaded receipt clears that thread only.
    receipt(bob, room_id, first_reply, thread_id=root)
    after = counts(bob, room_id)
    assert after == {"main": unread(1), "threads": {root: unread(1)}}
    receipt(bob, room_id, root, thread_id="main")
    assert counts(bob, room_id) == {"main": unread(0), "threads": {root: unread(1)}}
    # An unthreaded receipt clears everything up to its event.
    last = alice.send(room_id, text("reply 3", **in_thread))
    receipt(bob, room_id, last)
    assert counts(bob, room_id) == {"main": unread(0), "threads": {}}


def test_notifications_endpoint(alice: User, bob: User) -> None:
    room_id = shared_room(alice, bob)
    sent = [alice.send(room_id, text(f"message {i}")) for i in range(3)]
    mention = alice.send(room_id, text("bob", **{"m.mentions": {"user_ids": [bob.user_id]}}))
    receipt(bob, room_id, sent[1])

    everything = bob.ok("GET", "/notifications")
    listed = everything["notifications"]
    assert [n["event"]["event_id"] for n in listed] == [mention, *reversed(sent)]
    assert [n["read"] for n in listed] == [False, False, True, True]
    assert all(n["room_id"] == room_id and isinstance(n["ts"], int) for n in listed)
    assert listed[0]["actions"][0] == "notify"
    assert {"set_tweak": "highlight"} in listed[0]["actions"]
    assert listed[0]["event"]["content"]["body"] == "bob"
    assert "next_token" not in everything

    page = bob.ok("GET", "/notifications?limit=2")
    assert [n["event"]["event_id"] for n in page["notifications"]] == [mention, sent[2]]
    rest = bob.ok("GET", f"/notifications?limit=2&from={page['next_token']}")
    assert [n["event"]["event_id"] for n in rest["notifications"]] == [sent[1], sent[0]]

    highlights = bob.ok("GET", "/notifications?only=highlight")["notifications"]
    assert [n["event"]["event_id"] for n in highlights] == [mention]
    assert alice.ok("GET", "/notifications") == {"notifications": []}
    assert_error(bob.request("GET", "/notifications?from=abc"), 400, "M_INVALID_PARAM")
    assert_error(bob.request("GET", "/notifications?limit=x"), 400, "M_INVALID_PARAM")
    assert_error(bob.request("GET", "/notifications", token=False), 401, "M_MISSING_TOKEN")


def test_invite_notifies_the_invitee(alice: User, bob: User) -> None:
    room_id = alice.create_room(preset="private_chat")
    assert alice.membership(room_id, "invite", {"user_id": bob.user_id}).status == 200
    listed = bob.ok("GET", "/notifications")["notifications"]
    assert len(listed) == 1
    event = listed[0]["event"]
    assert event["type"] == "m.room.member" and event["state_key"] == bob.user_id
    assert listed[0]["actions"] == ["notify", {"set_tweak": "sound", "value": "default"}]
