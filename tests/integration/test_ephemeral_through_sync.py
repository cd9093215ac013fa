"""Typing, receipts, account data, tags and presence as /sync serves them (real HTTP)."""

from __future__ import annotations

from typing import Any

from tests.integration.rooms_helpers import User, quote
from tests.integration.streams_helpers import alice, bob, server, shared_room

__all__ = ["alice", "bob", "server"]  # fixtures


def sync(user: User, since: str | None = None) -> Any:
    path = "/sync?timeout=0" + (f"&since={quote(since)}" if since else "")
    return user.ok("GET", path)


def test_streams_reach_sync(alice: User, bob: User) -> None:
    room_id = shared_room(alice, bob)
    event_id = alice.send(room_id, {"msgtype": "m.text", "body": "hi"})
    since = sync(bob)["next_batch"]
    alice.ok("PUT", f"/rooms/{quote(room_id)}/typing/{quote(alice.user_id)}", {"typing": True})
    alice.ok("POST", f"/rooms/{quote(room_id)}/receipt/m.read/{quote(event_id)}", {})
    bob.ok("PUT", f"/user/{quote(bob.user_id)}/account_data/org.example.g", {"g": 1})
    bob.ok("PUT", f"/user/{quote(bob.user_id)}/rooms/{quote(room_id)}/tags/u.work", {})
    alice.ok("PUT", f"/presence/{quote(alice.user_id)}/status", {"presence": "online"})
    # (A new message too: the room is listed in an incremental sync when it has new events.)
    alice.send(room_id, {"msgtype": "m.text", "body": "again"})
    result = sync(bob, since)
    room = result["rooms"]["join"][room_id]
    ephemeral = {e["type"]: e for e in room["ephemeral"]["events"]}
    assert ephemeral["m.typing"]["content"]["user_ids"] == [alice.user_id]
    assert alice.user_id in ephemeral["m.receipt"]["content"][event_id]["m.read"]
    assert {"type": "m.tag", "content": {"tags": {"u.work": {}}}} in room["account_data"]["events"]
    assert {"type": "org.example.g", "content": {"g": 1}} in result["account_data"]["events"]
    senders = [e["sender"] for e in result["presence"]["events"]]
    assert alice.user_id in senders
    # Nothing moved since: none of it again.
    again = sync(bob, result["next_batch"])
    assert room_id not in again.get("rooms", {}).get("join", {})
    assert again["account_data"]["events"] == []
    assert again["presence"]["events"] == []
