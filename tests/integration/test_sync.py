"""/sync over real HTTP, on SQLite and PostgreSQL, with two users."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.harness import (
    RegisteredUser,
    RunningHomeserver,
    make_config,
    start_homeserver,
)


@pytest.fixture
def hs(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    config = make_config(
        tmp_path,
        db_config,
        rc_message={"per_second": 0, "burst_count": 0},
        rc_joins={"local": {"per_second": 0, "burst_count": 0}},
    )
    running = start_homeserver(config, reactor_thread, run_sync)
    yield running
    running.stop()


def _param(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def sync(hs: RunningHomeserver, user: RegisteredUser, **params: Any) -> dict[str, Any]:
    query = "&".join(f"{k}={quote(_param(v))}" for k, v in params.items())
    result = hs.request("GET", f"/_matrix/client/v3/sync?{query}", access_token=user.access_token)
    assert result.status == 200, result.body
    body: dict[str, Any] = result.json()
    return body


def create_room(hs: RunningHomeserver, user: RegisteredUser, **body: Any) -> str:
    result = hs.request(
        "POST",
        "/_matrix/client/v3/createRoom",
        access_token=user.access_token,
        body={"preset": "public_chat", **body},
    )
    assert result.status == 200, result.body
    room_id: str = result.json()["room_id"]
    return room_id


_txn = [0]


def send(hs: RunningHomeserver, user: RegisteredUser, room_id: str, body: str) -> str:
    _txn[0] += 1
    result = hs.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/t{_txn[0]}",
        access_token=user.access_token,
        body={"msgtype": "m.text", "body": body},
    )
    assert result.status == 200, result.body
    event_id: str = result.json()["event_id"]
    return event_id


def member_action(
    hs: RunningHomeserver, user: RegisteredUser, room_id: str, action: str, **body: Any
) -> None:
    result = hs.request(
        "POST",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/{action}",
        access_token=user.access_token,
        body=body,
    )
    assert result.status == 200, result.body


def set_state(
    hs: RunningHomeserver,
    user: RegisteredUser,
    room_id: str,
    event_type: str,
    content: dict[str, Any],
) -> str:
    result = hs.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{event_type}",
        access_token=user.access_token,
        body=content,
    )
    assert result.status == 200, result.body
    event_id: str = result.json()["event_id"]
    return event_id


def bodies(room: dict[str, Any]) -> list[str]:
    return [
        e["content"].get("body")
        for e in room["timeline"]["events"]
        if e["type"] == "m.room.message"
    ]


def test_initial_then_incremental_sync(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    room_id = create_room(hs, alice, name="Sync room")
    member_action(hs, bob, room_id, "join")
    send(hs, alice, room_id, "hello")

    first = sync(hs, bob)
    room = first["rooms"]["join"][room_id]
    assert bodies(room) == ["hello"]
    assert room["timeline"]["limited"] is False
    assert room["summary"]["m.joined_member_count"] == 2
    assert room["summary"]["m.heroes"] == [alice.user_id]
    state_types = {e["type"] for e in room["state"]["events"]} | {
        e["type"] for e in room["timeline"]["events"]
    }
    assert {"m.room.create", "m.room.name", "m.room.power_levels"} <= state_types
    # Events in the timeline are not repeated in state.
    timeline_ids = {e["event_id"] for e in room["timeline"]["events"]}
    assert not timeline_ids & {e["event_id"] for e in room["state"]["events"]}
    assert "room_id" not in room["timeline"]["events"][0]

    send(hs, alice, room_id, "second")
    second = sync(hs, bob, since=first["next_batch"])
    room = second["rooms"]["join"][room_id]
    assert bodies(room) == ["second"]
    assert room["state"]["events"] == []
    assert room["timeline"]["limited"] is False

    # Nothing new: the room is not listed, and the token still works.
    third = sync(hs, bob, since=second["next_batch"])
    assert room_id not in third["rooms"].get("join", {})


def test_incremental_summary_only_when_membership_can_have_changed(
    hs: RunningHomeserver,
) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    carol = hs.register_user("carol")
    room_id = create_room(hs, alice)
    member_action(hs, bob, room_id, "join")
    since = sync(hs, bob)["next_batch"]

    send(hs, alice, room_id, "no membership change")
    quiet = sync(hs, bob, since=since)
    # Unchanged, so left out (the spec allows it; Synapse does the same).
    assert "summary" not in quiet["rooms"]["join"][room_id]

    member_action(hs, carol, room_id, "join")
    joined = sync(hs, bob, since=quiet["next_batch"])
    summary = joined["rooms"]["join"][room_id]["summary"]
    assert summary["m.joined_member_count"] == 3
    assert set(summary["m.heroes"]) == {alice.user_id, carol.user_id}

    # A gap in the timeline may hide a membership change: the summary is sent again.
    for n in range(12):
        send(hs, alice, room_id, f"filler {n}")
    gappy = sync(hs, bob, since=joined["next_batch"])
    room = gappy["rooms"]["join"][room_id]
    assert room["timeline"]["limited"] is True
    assert room["summary"]["m.joined_member_count"] == 3


def test_long_poll_wakes_on_a_message_and_times_out_otherwise(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    room_id = create_room(hs, alice)
    member_action(hs, bob, room_id, "join")
    since = sync(hs, bob)["next_batch"]

    started = time.monotonic()
    quiet = sync(hs, bob, since=since, timeout=300)
    assert time.monotonic() - started >= 0.25
    assert room_id not in quiet["rooms"].get("join", {})

    results: list[dict[str, Any]] = []
    poll = threading.Thread(
        target=lambda: results.append(sync(hs, bob, since=since, timeout=30000))
    )
    poll.start()
    time.sleep(0.3)
    send(hs, alice, room_id, "wake up")
    poll.join(20)
    assert not poll.is_alive(), "the long-poll did not return when a message arrived"
    assert bodies(results[0]["rooms"]["join"][room_id]) == ["wake up"]


def test_gappy_timeline_has_state_delta_and_prev_batch(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    room_id = create_room(hs, alice)
    member_action(hs, bob, room_id, "join")
    since = sync(hs, bob)["next_batch"]
    send(hs, alice, room_id, "m0")
    topic_id = set_state(hs, alice, room_id, "m.room.topic", {"topic": "changed in the gap"})
    for i in range(1, 8):
        send(hs, alice, room_id, f"m{i}")

    room = sync(hs, bob, since=since, filter={"room": {"timeline": {"limit": 3}}})["rooms"]["join"][
        room_id
    ]
    assert room["timeline"]["limited"] is True
    assert bodies(room) == ["m5", "m6", "m7"]
    assert [e["event_id"] for e in room["state"]["events"]] == [topic_id]
    # prev_batch continues backwards from the timeline's start.
    result = hs.request(
        "GET",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=2&from="
        f"{quote(room['timeline']['prev_batch'])}",
        access_token=bob.access_token,
    )
    assert result.status == 200, result.body
    assert [e["content"].get("body") for e in result.json()["chunk"]] == ["m4", "m3"]


def test_invite_withdrawn_invite_kick_and_rejoin(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    room_id = create_room(hs, alice, preset="private_chat", name="Secret")
    since = sync(hs, bob)["next_batch"]

    member_action(hs, alice, room_id, "invite", user_id=bob.user_id)
    invited = sync(hs, bob, since=since)
    invite_state = invited["rooms"]["invite"][room_id]["invite_state"]["events"]
    types = {e["type"] for e in invite_state}
    assert {"m.room.create", "m.room.name", "m.room.member"} <= types
    own = [e for e in invite_state if e["type"] == "m.room.member"][-1]
    assert own["state_key"] == bob.user_id and own["content"]["membership"] == "invite"

    # Withdrawn: the room moves to leave.
    member_action(hs, alice, room_id, "kick", user_id=bob.user_id, reason="oops")
    withdrawn = sync(hs, bob, since=invited["next_batch"])
    assert room_id in withdrawn["rooms"]["leave"]
    assert room_id not in withdrawn["rooms"].get("invite", {})

    # Invited again, joins, is kicked: the kick is the end of what bob sees.
    member_action(hs, alice, room_id, "invite", user_id=bob.user_id)
    member_action(hs, bob, room_id, "join")
    joined = sync(hs, bob, since=withdrawn["next_batch"])
    room = joined["rooms"]["join"][room_id]
    # Newly joined: the full state comes with it.
    all_types = {e["type"] for e in room["state"]["events"] + room["timeline"]["events"]}
    assert {"m.room.create", "m.room.join_rules"} <= all_types
    member_action(hs, alice, room_id, "kick", user_id=bob.user_id)
    send(hs, alice, room_id, "after the kick")
    kicked = sync(hs, bob, since=joined["next_batch"])
    left = kicked["rooms"]["leave"][room_id]
    last = left["timeline"]["events"][-1]
    assert last["type"] == "m.room.member" and last["content"]["membership"] == "leave"
    assert "after the kick" not in bodies(left)
    assert room_id not in kicked["rooms"].get("join", {})

    # Left rooms show on a first sync only when the filter asks.
    assert room_id not in sync(hs, bob)["rooms"].get("leave", {})
    with_leave = sync(hs, bob, filter={"room": {"include_leave": True}})
    assert room_id in with_leave["rooms"]["leave"]


def test_lazy_loading_and_state_after(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    carol = hs.register_user("carol")
    room_id = create_room(hs, alice)
    for user in (bob, carol):
        member_action(hs, user, room_id, "join")
    for i in range(12):
        send(hs, alice, room_id, f"x{i}")
    lazy = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 5}}}
    room = sync(hs, bob, filter=lazy)["rooms"]["join"][room_id]
    members = {e["state_key"] for e in room["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {alice.user_id, bob.user_id}  # not carol: she sent nothing shown

    after = sync(hs, bob, use_state_after=True)["rooms"]["join"][room_id]
    assert "state" not in after
    after_members = {
        e["state_key"] for e in after["state_after"]["events"] if e["type"] == "m.room.member"
    }
    assert after_members == {alice.user_id, bob.user_id, carol.user_id}


def test_bad_input(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    for since in ("garbage", "s1_x", "t"):
        result = hs.request(
            "GET", f"/_matrix/client/v3/sync?since={since}", access_token=alice.access_token
        )
        assert (result.status, result.json()["errcode"]) == (400, "M_INVALID_PARAM")
    bad_filter = hs.request(
        "GET", "/_matrix/client/v3/sync?filter=%7Bnot", access_token=alice.access_token
    )
    assert bad_filter.status == 400
    unknown_filter = hs.request(
        "GET", "/_matrix/client/v3/sync?filter=999", access_token=alice.access_token
    )
    assert unknown_filter.status in (400, 404)
    assert unknown_filter.json()["errcode"] in ("M_NOT_FOUND", "M_INVALID_PARAM")
    negative = hs.request(
        "GET", "/_matrix/client/v3/sync?timeout=-5", access_token=alice.access_token
    )
    assert negative.status == 200
    presence = hs.request(
        "GET", "/_matrix/client/v3/sync?set_presence=dancing", access_token=alice.access_token
    )
    assert (presence.status, presence.json()["errcode"]) == (400, "M_INVALID_PARAM")
    assert hs.request("GET", "/_matrix/client/v3/sync").status == 401
    r0 = hs.request("GET", "/_matrix/client/r0/sync", access_token=alice.access_token)
    assert r0.status == 200 and "next_batch" in r0.json()


def test_forgotten_rooms_leave_sync(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    room_id = create_room(hs, alice)
    member_action(hs, bob, room_id, "join")
    member_action(hs, bob, room_id, "leave")
    assert room_id in sync(hs, bob, filter={"room": {"include_leave": True}})["rooms"]["leave"]
    member_action(hs, bob, room_id, "forget")
    after = sync(hs, bob, filter={"room": {"include_leave": True}})
    assert room_id not in after["rooms"].get("leave", {})


def test_members_at_a_sync_token(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    carol = hs.register_user("carol")
    room_id = create_room(hs, alice)
    member_action(hs, bob, room_id, "join")
    token = sync(hs, alice)["next_batch"]
    member_action(hs, carol, room_id, "join")

    def members(query: str) -> set[str]:
        result = hs.request(
            "GET",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/members{query}",
            access_token=alice.access_token,
        )
        assert result.status == 200, result.body
        return {e["state_key"] for e in result.json()["chunk"]}

    assert members("") == {alice.user_id, bob.user_id, carol.user_id}
    assert members(f"?at={quote(token)}") == {alice.user_id, bob.user_id}
    bad = hs.request(
        "GET",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/members?at=nonsense",
        access_token=alice.access_token,
    )
    assert (bad.status, bad.json()["errcode"]) == (400, "M_INVALID_PARAM")


def test_typing_alone_wakes_and_shows_the_room(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    room_id = create_room(hs, alice)
    member_action(hs, bob, room_id, "join")
    since = sync(hs, bob)["next_batch"]
    results: list[dict[str, Any]] = []
    poll = threading.Thread(
        target=lambda: results.append(sync(hs, bob, since=since, timeout=30000))
    )
    poll.start()
    time.sleep(0.3)
    typing = hs.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/typing/{quote(alice.user_id)}",
        access_token=alice.access_token,
        body={"typing": True, "timeout": 10000},
    )
    assert typing.status == 200, typing.body
    poll.join(20)
    assert not poll.is_alive()
    room = results[0]["rooms"]["join"][room_id]
    assert room["timeline"]["events"] == []
    typing_events = [e for e in room["ephemeral"]["events"] if e["type"] == "m.typing"]
    assert typing_events[0]["content"]["user_ids"] == [alice.user_id]


def test_bad_relations_are_refused_on_send(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    room_id = create_room(hs, alice)
    parent = send(hs, alice, room_id, "parent")
    ok = hs.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.reaction/r1",
        access_token=alice.access_token,
        body={"m.relates_to": {"rel_type": "m.annotation", "event_id": parent, "key": "👍"}},
    )
    assert ok.status == 200, ok.body
    again = hs.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.reaction/r2",
        access_token=alice.access_token,
        body={"m.relates_to": {"rel_type": "m.annotation", "event_id": parent, "key": "👍"}},
    )
    assert again.status == 400 and again.json()["errcode"] == "M_DUPLICATE_ANNOTATION"
    unknown = hs.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/r3",
        access_token=alice.access_token,
        body={"body": "x", "m.relates_to": {"rel_type": "m.thread", "event_id": "$nope"}},
    )
    assert unknown.status == 400


def test_ignored_users_are_hidden_from_sync_and_history(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    room_id = create_room(hs, alice)
    member_action(hs, bob, room_id, "join")
    ignore = hs.request(
        "PUT",
        f"/_matrix/client/v3/user/{quote(bob.user_id)}/account_data/m.ignored_user_list",
        access_token=bob.access_token,
        body={"ignored_users": {alice.user_id: {}}},
    )
    assert ignore.status == 200, ignore.body
    since = sync(hs, bob)["next_batch"]
    send(hs, alice, room_id, "you will not see this")
    send(hs, bob, room_id, "my own words")
    room = sync(hs, bob, since=since)["rooms"]["join"][room_id]
    assert bodies(room) == ["my own words"]
    history = hs.request(
        "GET",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=10",
        access_token=bob.access_token,
    )
    shown = [
        e["content"].get("body") for e in history.json()["chunk"] if e["type"] == "m.room.message"
    ]
    assert shown == ["my own words"]


def test_invite_rate_limits(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    config = make_config(
        tmp_path,
        db_config,
        rc_invites={"per_room": {"per_second": 0.001, "burst_count": 1}},
    )
    running = start_homeserver(config, reactor_thread, run_sync)
    try:
        alice = running.register_user("alice")
        bob = running.register_user("bob")
        carol = running.register_user("carol")
        room_id = create_room(running, alice)
        member_action(running, alice, room_id, "invite", user_id=bob.user_id)
        refused = running.request(
            "POST",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/invite",
            access_token=alice.access_token,
            body={"user_id": carol.user_id},
        )
        assert refused.status == 429
        assert refused.json()["errcode"] == "M_LIMIT_EXCEEDED"
    finally:
        running.stop()
