"""A late joiner reads a room's earlier history: /messages on their server backfills it
from the room's server (real TLS between in-process Hearth servers, SQLite and
PostgreSQL), without disturbing /sync; timestamp_to_event asks the room's server when
ours has gaps."""

from __future__ import annotations

import time
from typing import Any

from storage.events import EventStore
from tests.integration import federation_helpers
from tests.integration.federation_harness import (
    call,
    create_room,
    join_over_federation,
    ok,
    q,
    register,
    send_text,
    wait_for,
)
from tests.integration.federation_helpers import FederatedServer, Federation
from tests.integration.harness import RegisteredUser

# Enough messages to page through, sent faster than rc_message allows by default.
UNLIMITED = {"per_second": 0, "burst_count": 0}

db_configs = federation_helpers.db_configs
federation = federation_helpers.federation


def page_back(
    server: FederatedServer, user: RegisteredUser, room_id: str, limit: int
) -> list[dict[str, Any]]:
    """Every event /messages returns walking back from the end, page by page."""
    events: list[dict[str, Any]] = []
    token = ""
    for _ in range(50):
        suffix = f"&from={q(token)}" if token else ""
        page = ok(
            call(server, user, "GET", f"/rooms/{q(room_id)}/messages?dir=b&limit={limit}{suffix}")
        )
        events.extend(page["chunk"])
        if "end" not in page:
            return events
        token = page["end"]
    raise AssertionError("pagination never ended")


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


def test_late_joiner_pages_back_through_backfilled_history(federation: Federation) -> None:
    a, b = federation.start("a", rc_message=UNLIMITED), federation.start("b")
    alice, bob = register(a, "alice"), register(b, "bob")
    room_id = create_room(a, alice, preset="public_chat", name="History")
    old = [f"old {i}" for i in range(25)]
    for text in old:
        send_text(a, alice, room_id, text)

    join_over_federation(b, bob, room_id, a)
    since = ok(call(b, bob, "GET", "/sync?timeout=0"))["next_batch"]
    before_backfill = b.run_sync(lambda: b.homeserver.event_store.get_room_head(room_id))

    events = page_back(b, bob, room_id, limit=7)
    assert bodies(events) == list(reversed(old))
    # The whole room, back to its creation (events held as outliers since the join
    # take their place in the timeline), newest first, each once.
    types = [e["type"] for e in events]
    assert types[0] == "m.room.member" and events[0]["state_key"] == bob.user_id
    assert types[-1] == "m.room.create"
    assert "m.room.name" in types and "m.room.power_levels" in types
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    # The same as alice sees on the room's own server.
    on_a = page_back(a, alice, room_id, limit=50)
    assert ids == [e["event_id"] for e in on_a]

    # Backfill changed neither the room's head nor /sync: nothing of it comes down as new.
    after_backfill = b.run_sync(lambda: b.homeserver.event_store.get_room_head(room_id))
    assert after_backfill.forward_extremities == before_backfill.forward_extremities
    assert after_backfill.state == before_backfill.state
    quiet = ok(call(b, bob, "GET", f"/sync?timeout=0&since={q(since)}"))
    assert room_id not in quiet["rooms"].get("join", {})

    # Live events still arrive and sync as usual, and paging again needs no backfill.
    send_text(a, alice, room_id, "new")

    def synced_new() -> bool:
        sync = ok(call(b, bob, "GET", f"/sync?timeout=0&since={q(since)}"))
        timeline = sync["rooms"].get("join", {}).get(room_id, {}).get("timeline", {})
        return bodies(timeline.get("events", [])) == ["new"]

    wait_for(synced_new, "the new message in bob's sync")
    again = page_back(b, bob, room_id, limit=100)
    assert bodies(again) == ["new", *reversed(old)]

    # Backfilled events sit below every other stream position, and a restarted server
    # goes on counting down from the lowest.
    database = b.homeserver.database
    assert database is not None
    lowest = b.run_sync(
        lambda: database.execute("lowest", "SELECT MIN(stream_ordering) FROM events")
    )[0][0]
    assert lowest < 0
    restarted = EventStore(database)
    b.run_sync(restarted.load_positions)
    assert restarted._lowest_backfilled == lowest


def test_backfill_respects_joined_visibility(federation: Federation) -> None:
    a, b = federation.start("a"), federation.start("b")
    alice, bob = register(a, "alice"), register(b, "bob")
    room_id = create_room(
        a,
        alice,
        preset="public_chat",
        initial_state=[
            {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}
        ],
    )
    secret = send_text(a, alice, room_id, "before bob")
    join_over_federation(b, bob, room_id, a)
    send_text(a, alice, room_id, "after bob")
    wait_for(
        lambda: "after bob" in bodies(page_back(b, bob, room_id, limit=10)), "the live message"
    )

    events = page_back(b, bob, room_id, limit=10)
    assert bodies(events) == ["after bob"]
    # B holds the earlier message only as A sent it: redacted.
    held = b.run_sync(lambda: b.homeserver.event_store.get_event(secret))
    assert held is not None and held.content == {}
    assert not held.internal_metadata.get("outlier")
    # On A, alice still sees everything.
    assert bodies(page_back(a, alice, room_id, limit=10)) == ["after bob", "before bob"]


def test_timestamp_to_event_asks_the_room_server(federation: Federation) -> None:
    a, b = federation.start("a"), federation.start("b")
    alice, bob = register(a, "alice"), register(b, "bob")
    room_id = create_room(a, alice, preset="public_chat")
    first = send_text(a, alice, room_id, "early")
    early_ts = ok(call(a, alice, "GET", f"/rooms/{q(room_id)}/event/{q(first)}"))[
        "origin_server_ts"
    ]
    time.sleep(0.01)
    join_over_federation(b, bob, room_id, a)

    # B only holds the join and what came after; A knows the early message is closer.
    path = f"/rooms/{q(room_id)}/timestamp_to_event?ts={early_ts}&dir=f"
    found = ok(b.https("GET", "/_matrix/client/v1" + path, None, auth(bob)))
    assert found == {"event_id": first, "origin_server_ts": early_ts}
    # ... and the event is now held, for the client to use.
    context = ok(call(b, bob, "GET", f"/rooms/{q(room_id)}/context/{q(first)}?limit=2"))
    assert context["event"]["content"]["body"] == "early"

    # Backwards from before the room existed: nothing anywhere.
    none = b.https(
        "GET",
        f"/_matrix/client/v1/rooms/{q(room_id)}/timestamp_to_event?ts=1&dir=b",
        None,
        auth(bob),
    )
    assert none.status == 404 and none.json()["errcode"] == "M_NOT_FOUND"


def auth(user: RegisteredUser) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.access_token}"}
