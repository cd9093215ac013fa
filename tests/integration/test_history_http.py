"""/messages, /context and timestamp_to_event over real HTTP, on both databases.

Users register over HTTP; rooms are filled in-process through the running server's own
EventCreator (fast, and the same path the send endpoints take).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from homeserver.events.model import Event
from homeserver.handlers.event_creation import EventSpec
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from storage.engine import DatabaseConfig
from tests.integration.harness import (
    RegisteredUser,
    RunningHomeserver,
    make_config,
    start_homeserver,
)

CLIENT = "/_matrix/client/v3"


@pytest.fixture
def server(tmp_path: Path, db_config: DatabaseConfig, run_sync: Any) -> Iterator[RunningHomeserver]:
    from twisted.internet import reactor

    running = start_homeserver(make_config(tmp_path, db_config), reactor, run_sync)
    try:
        yield running
    finally:
        running.stop()


class Rooms:
    def __init__(self, server: RunningHomeserver) -> None:
        self.server = server
        self.creator = server.homeserver.event_creator

    def create(self, creator: str, visibility: str = "shared") -> str:
        version = KNOWN_ROOM_VERSIONS["10"]
        specs = [
            EventSpec("m.room.create", creator, {"room_version": "10", "creator": creator}, ""),
            EventSpec("m.room.member", creator, {"membership": "join"}, creator),
            EventSpec("m.room.power_levels", creator, {"users": {creator: 100}}, ""),
            EventSpec("m.room.join_rules", creator, {"join_rule": "public"}, ""),
            EventSpec("m.room.history_visibility", creator, {"history_visibility": visibility}, ""),
        ]
        room_id, _ = self.server.run_sync(self.creator.create_room(version, creator, specs))
        return str(room_id)

    def send(self, room_id: str, spec: EventSpec) -> Event:
        event: Event = self.server.run_sync(self.creator.send(room_id, spec))
        return event

    def message(self, room_id: str, sender: str, body: str) -> Event:
        return self.send(
            room_id, EventSpec("m.room.message", sender, {"msgtype": "m.text", "body": body})
        )

    def member(self, room_id: str, sender: str, target: str, membership: str) -> Event:
        return self.send(
            room_id, EventSpec("m.room.member", sender, {"membership": membership}, target)
        )


def get(
    server: RunningHomeserver, user: RegisteredUser, path: str, **params: Any
) -> tuple[int, dict[str, Any]]:
    query = {
        key: json.dumps(value) if isinstance(value, dict) else value
        for key, value in params.items()
        if value is not None
    }
    url = path + ("?" + urlencode(query) if query else "")
    result = server.request("GET", url, access_token=user.access_token)
    return result.status, result.json()


def bodies(chunk: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in chunk if e["type"] == "m.room.message"]


def messages_path(room_id: str) -> str:
    return f"{CLIENT}/rooms/{quote(room_id)}/messages"


def test_paginate_over_http(server: RunningHomeserver) -> None:
    alice = server.register_user("alice")
    bob = server.register_user("bob")
    rooms = Rooms(server)
    room_id = rooms.create(alice.user_id)
    rooms.member(room_id, bob.user_id, bob.user_id, "join")
    for i in range(15):
        rooms.message(room_id, alice.user_id if i % 3 else bob.user_id, f"m{i}")

    status, page = get(server, alice, messages_path(room_id), dir="b", limit=5)
    assert status == 200, page
    assert bodies(page["chunk"]) == ["m14", "m13", "m12", "m11", "m10"]
    assert page["chunk"][0]["room_id"] == room_id and "age" in page["chunk"][0]["unsigned"]
    collected = list(page["chunk"])
    token = page["end"]
    while True:
        status, page = get(
            server, alice, messages_path(room_id), dir="b", limit=5, **{"from": token}
        )
        assert status == 200
        collected.extend(page["chunk"])
        if "end" not in page:
            break
        token = page["end"]
    assert len(collected) == 21 and collected[-1]["type"] == "m.room.create"

    # Forwards from the start (no `from`, as v1.3 allows), bounded by `to`.
    status, first = get(server, alice, messages_path(room_id), dir="f", limit=6)
    assert status == 200
    assert first["chunk"][0]["type"] == "m.room.create"
    status, bounded = get(
        server, alice, messages_path(room_id), dir="f", limit=100, to=first["end"]
    )
    assert [e["event_id"] for e in bounded["chunk"]] == [e["event_id"] for e in first["chunk"]]
    assert "end" not in bounded
    # The r0 path serves the same.
    r0 = server.request(
        "GET",
        f"/_matrix/client/r0/rooms/{quote(room_id)}/messages?dir=b&limit=1",
        access_token=alice.access_token,
    )
    assert r0.status == 200 and bodies(r0.json()["chunk"]) == ["m14"]

    # Filters: senders, lazy loading.
    status, filtered = get(
        server,
        alice,
        messages_path(room_id),
        dir="b",
        limit=3,
        filter={"senders": [bob.user_id], "lazy_load_members": True},
    )
    assert status == 200
    assert bodies(filtered["chunk"]) == ["m12", "m9", "m6"]
    assert [(e["type"], e["state_key"]) for e in filtered["state"]] == [
        ("m.room.member", bob.user_id)
    ]


@pytest.mark.parametrize(
    ("params", "errcode"),
    [
        ({"dir": "x"}, "M_INVALID_PARAM"),
        ({"dir": "b", "limit": "ten"}, "M_INVALID_PARAM"),
        ({"dir": "b", "limit": "-1"}, "M_INVALID_PARAM"),
        ({"dir": "b", "from": "garbage"}, "M_INVALID_PARAM"),
        ({"dir": "b", "to": "t1"}, "M_INVALID_PARAM"),
        ({"dir": "b", "filter": "{not json"}, "M_NOT_JSON"),
        ({"dir": "b", "filter": "[]"}, "M_BAD_JSON"),
        ({"dir": "b", "filter": '{"types": "m.room.message"}'}, "M_BAD_JSON"),
        ({"dir": "b", "filter": '{"lazy_load_members": "true"}'}, "M_BAD_JSON"),
    ],
)
def test_bad_messages_requests(
    server: RunningHomeserver, params: dict[str, str], errcode: str
) -> None:
    alice = server.register_user("alice")
    room_id = Rooms(server).create(alice.user_id)
    result = server.request(
        "GET", f"{messages_path(room_id)}?{urlencode(params)}", access_token=alice.access_token
    )
    assert result.status == 400, result.body
    assert result.json()["errcode"] == errcode


def test_access_to_history(server: RunningHomeserver) -> None:
    alice = server.register_user("alice")
    bob = server.register_user("bob")
    carol = server.register_user("carol")
    rooms = Rooms(server)
    private = rooms.create(alice.user_id, "joined")
    rooms.message(private, alice.user_id, "before bob")
    rooms.member(private, bob.user_id, bob.user_id, "join")
    rooms.message(private, alice.user_id, "with bob")
    rooms.member(private, bob.user_id, bob.user_id, "leave")
    rooms.message(private, alice.user_id, "after bob")

    # Not a member, not world-readable; and a room that does not exist: 403 (as Synapse).
    for room in (private, "!unknown:hs.test"):
        status, body = get(server, carol, messages_path(room), dir="b")
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # Bob left: he sees what he was joined for, up to his leave.
    status, body = get(server, bob, messages_path(private), dir="b")
    assert status == 200 and bodies(body["chunk"]) == ["with bob"]
    status, body = get(server, bob, messages_path(private), dir="f")
    assert bodies(body["chunk"]) == ["with bob"] and "end" not in body

    public = rooms.create(alice.user_id, "world_readable")
    rooms.message(public, alice.user_id, "hello world")
    status, body = get(server, carol, messages_path(public), dir="b")
    assert status == 200 and bodies(body["chunk"]) == ["hello world"]

    # No token: 401.
    anonymous = server.request("GET", f"{messages_path(public)}?dir=b")
    assert anonymous.status == 401


def test_context_over_http(server: RunningHomeserver) -> None:
    alice = server.register_user("alice")
    carol = server.register_user("carol")
    rooms = Rooms(server)
    room_id = rooms.create(alice.user_id)
    sent = [rooms.message(room_id, alice.user_id, f"m{i}") for i in range(9)]
    target = sent[4]
    path = f"{CLIENT}/rooms/{quote(room_id)}/context/{quote(target.event_id)}"
    status, body = get(server, alice, path, limit=4)
    assert status == 200, body
    assert body["event"]["event_id"] == target.event_id
    assert bodies(body["events_before"]) == ["m3", "m2"]
    assert bodies(body["events_after"]) == ["m5", "m6"]
    assert ("m.room.member", alice.user_id) in {(e["type"], e["state_key"]) for e in body["state"]}
    status, back = get(
        server, alice, messages_path(room_id), dir="b", limit=2, **{"from": body["start"]}
    )
    assert bodies(back["chunk"]) == ["m1", "m0"]
    status, forward = get(
        server, alice, messages_path(room_id), dir="f", limit=2, **{"from": body["end"]}
    )
    assert bodies(forward["chunk"]) == ["m7", "m8"]

    status, lazy = get(server, alice, path, limit=2, filter={"lazy_load_members": True})
    assert [e["state_key"] for e in lazy["state"]] == [alice.user_id]

    status, missing = get(server, alice, f"{CLIENT}/rooms/{quote(room_id)}/context/%24nope")
    assert (status, missing["errcode"]) == (404, "M_NOT_FOUND")
    status, denied = get(server, carol, path)
    assert (status, denied["errcode"]) == (403, "M_FORBIDDEN")
    status, bad = get(server, alice, path, limit="x")
    assert (status, bad["errcode"]) == (400, "M_INVALID_PARAM")


def test_timestamp_to_event_over_http(server: RunningHomeserver) -> None:
    alice = server.register_user("alice")
    carol = server.register_user("carol")
    rooms = Rooms(server)
    room_id = rooms.create(alice.user_id)
    first = rooms.message(room_id, alice.user_id, "one")
    path = f"/_matrix/client/v1/rooms/{quote(room_id)}/timestamp_to_event"
    status, body = get(server, alice, path, ts=first.origin_server_ts, dir="b")
    assert status == 200, body
    assert body == {"event_id": first.event_id, "origin_server_ts": first.origin_server_ts}
    status, body = get(server, alice, path, ts=first.origin_server_ts + 10**6, dir="f")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = get(server, alice, path, ts=0, dir="b")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = get(server, alice, path, dir="b")
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = get(server, alice, path, ts="soon", dir="b")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = get(server, alice, path, ts=0, dir="up")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = get(server, carol, path, ts=0, dir="f")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
