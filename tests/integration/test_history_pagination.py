"""/messages, /context and timestamp_to_event over the real stores, on both databases.

Rooms are built in-process with the EventCreator (fast); the HTTP face is covered by
test_history_http.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from homeserver.errors import MatrixError
from homeserver.handlers.event_creation import EventSpec
from homeserver.handlers.filters import RoomEventFilter
from homeserver.streams import RoomStreamToken
from storage.engine import Database
from tests.integration.history_fixtures import ALICE, BOB, CAROL, History, bodies, requester

Scenario = Callable[[History], Awaitable[None]]


def run(database: Database, run_sync: Any, scenario: Scenario) -> None:
    async def go() -> None:
        history = History(database)
        await history.start()
        await scenario(history)

    run_sync(go(), timeout=120)


async def room_with_messages(h: History, count: int) -> str:
    room_id = await h.create_room()
    await h.membership(room_id, BOB, BOB, "join")
    for i in range(count):
        await h.send(room_id, ALICE if i % 2 == 0 else BOB, f"m{i}")
    return room_id


def test_paginate_backwards_and_forwards_through_everything(
    database: Database, run_sync: Any
) -> None:
    async def scenario(h: History) -> None:
        room_id = await room_with_messages(h, 25)
        expected = [f"m{i}" for i in range(25)]

        first = await h.messages(ALICE, room_id, limit=10)
        assert bodies(first["chunk"]) == expected[::-1][:10]
        assert "end" in first and "state" not in first
        RoomStreamToken.parse(first["start"])
        chunk, pages = await h.all_messages(ALICE, room_id, limit=10)
        # 25 messages + bob's join + 4 initial events = 30 events: exactly 3 full pages,
        # and the page count shows no empty page was needed to discover the start.
        assert pages == 3 and len(chunk) == 30
        assert bodies(chunk) == expected[::-1]
        assert chunk[-1]["type"] == "m.room.create"
        ids = [e["event_id"] for e in chunk]
        assert len(set(ids)) == len(ids)

        forward, pages = await h.all_messages(ALICE, room_id, backwards=False, limit=7)
        assert [e["event_id"] for e in forward] == ids[::-1]
        assert pages == 5

        # Forwards from a backwards page's `end` walks back over what it skipped.
        again = await h.messages(ALICE, room_id, backwards=False, from_token=first["end"], limit=10)
        assert bodies(again["chunk"]) == expected[15:25]
        assert "end" not in again

    run(database, run_sync, scenario)


def test_from_and_to_bound_the_walk(database: Database, run_sync: Any) -> None:
    async def scenario(h: History) -> None:
        room_id = await room_with_messages(h, 12)
        page1 = await h.messages(ALICE, room_id, limit=3)
        page2 = await h.messages(ALICE, room_id, limit=3, from_token=page1["end"])
        assert bodies(page2["chunk"]) == ["m8", "m7", "m6"]
        # `to` stops backwards pagination at page1's end going forwards from the start.
        bounded = await h.messages(
            ALICE, room_id, backwards=False, to_token=page2["end"], limit=100
        )
        assert bodies(bounded["chunk"]) == [f"m{i}" for i in range(6)]
        assert "end" not in bounded
        # And `to` going backwards stops before the events at or below it.
        back = await h.messages(ALICE, room_id, to_token=page2["end"], limit=100)
        assert bodies(back["chunk"]) == [f"m{i}" for i in range(11, 5, -1)]
        assert "end" not in back
        # A limited page bounded by `to` has an end.
        short = await h.messages(ALICE, room_id, to_token=page2["end"], limit=2)
        assert bodies(short["chunk"]) == ["m11", "m10"] and "end" in short

    run(database, run_sync, scenario)


def test_stream_tokens_and_bad_tokens(database: Database, run_sync: Any) -> None:
    async def scenario(h: History) -> None:
        room_id = await room_with_messages(h, 5)
        m2 = await h.send(room_id, ALICE, "later")
        position = h.store.stream_ids.current_token()
        await h.send(room_id, ALICE, "after-token")
        # A /sync-style stream token: everything up to that position, newest first.
        page = await h.messages(ALICE, room_id, from_token=f"s{position}", limit=2)
        assert bodies(page["chunk"]) == ["later", "m4"]
        assert page["start"] == f"s{position}"
        assert page["chunk"][0]["event_id"] == m2.event_id
        for bad in ("x1", "t1", "s", "t1-x", "s1_x", "", "s99999999999999999999"):
            if bad == "":
                continue
            with pytest.raises(MatrixError) as e:
                await h.messages(ALICE, room_id, from_token=bad)
            assert (e.value.status, e.value.errcode) == (400, "M_INVALID_PARAM")
            with pytest.raises(MatrixError) as e:
                await h.messages(ALICE, room_id, to_token=bad)
            assert e.value.errcode == "M_INVALID_PARAM"
        zero = await h.messages(ALICE, room_id, limit=0)
        assert zero["chunk"] == [] and "end" not in zero

    run(database, run_sync, scenario)


def test_unknown_room_and_non_member_are_forbidden(database: Database, run_sync: Any) -> None:
    async def scenario(h: History) -> None:
        room_id = await room_with_messages(h, 2)
        for user, room in ((CAROL, room_id), (ALICE, "!nowhere:hs.test")):
            with pytest.raises(MatrixError) as e:
                await h.messages(user, room)
            assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")

    run(database, run_sync, scenario)


def test_filters(database: Database, run_sync: Any) -> None:
    async def scenario(h: History) -> None:
        room_id = await room_with_messages(h, 6)
        await h.send(room_id, BOB, "picture", url="mxc://hs.test/abc")
        await h.state(room_id, ALICE, "m.room.topic", {"topic": "t"})
        await h.creator.send(room_id, EventSpec("org.example.custom", BOB, {"x": 1}))

        async def with_filter(**spec: Any) -> list[dict[str, Any]]:
            page = await h.messages(
                ALICE, room_id, limit=100, event_filter=RoomEventFilter.from_json(spec)
            )
            return list(page["chunk"])

        assert {e["type"] for e in await with_filter(types=["m.room.topic"])} == {"m.room.topic"}
        assert {e["type"] for e in await with_filter(types=["m.room.*"])} >= {
            "m.room.message",
            "m.room.create",
        }
        assert all(
            e["type"] != "m.room.message" for e in await with_filter(not_types=["m.room.message"])
        )
        assert all(e["type"].startswith("org.") for e in await with_filter(not_types=["m.*"]))
        bob_only = await with_filter(senders=[BOB], types=["m.room.message"])
        assert bodies(bob_only) == ["picture", "m5", "m3", "m1"]
        assert all(e["sender"] == ALICE for e in await with_filter(not_senders=[BOB]))
        assert bodies(await with_filter(contains_url=True)) == ["picture"]
        assert "picture" not in bodies(await with_filter(contains_url=False))
        assert await with_filter(rooms=["!other:hs.test"]) == []
        assert await with_filter(not_rooms=[room_id]) == []
        assert await with_filter(senders=[]) == []
        # Type patterns are not LIKE patterns.
        assert await with_filter(types=["m_room%"]) == []

    run(database, run_sync, scenario)


def test_lazy_loading_members(database: Database, run_sync: Any) -> None:
    async def scenario(h: History) -> None:
        room_id = await h.create_room()
        bob_join = await h.membership(room_id, BOB, BOB, "join")
        carol_join = await h.membership(room_id, CAROL, CAROL, "join")
        for i in range(4):
            await h.send(room_id, BOB, f"b{i}")
        await h.send(room_id, CAROL, "c0")
        lazy = RoomEventFilter.from_json({"lazy_load_members": True, "types": ["m.room.message"]})
        page = await h.messages(ALICE, room_id, limit=3, event_filter=lazy)
        assert bodies(page["chunk"]) == ["c0", "b3", "b2"]
        members = {e["state_key"]: e["event_id"] for e in page["state"]}
        assert members == {BOB: bob_join.event_id, CAROL: carol_join.event_id}
        page2 = await h.messages(ALICE, room_id, limit=3, event_filter=lazy, from_token=page["end"])
        assert bodies(page2["chunk"]) == ["b1", "b0"]
        assert [e["state_key"] for e in page2["state"]] == [BOB]
        # Forwards: a sender who joined after the chunk's first event is still included.
        forward = await h.messages(
            ALICE,
            room_id,
            backwards=False,
            limit=50,
            event_filter=RoomEventFilter.from_json(
                {"lazy_load_members": True, "include_redundant_members": True}
            ),
        )
        assert {e["state_key"] for e in forward["state"]} == {ALICE, BOB, CAROL}
        plain = await h.messages(ALICE, room_id, limit=3)
        assert "state" not in plain

    run(database, run_sync, scenario)


def test_departed_member_sees_up_to_their_leave(database: Database, run_sync: Any) -> None:
    async def scenario(h: History) -> None:
        room_id = await h.create_room("shared")
        await h.send(room_id, ALICE, "before")
        await h.membership(room_id, BOB, BOB, "join")
        await h.send(room_id, ALICE, "while")
        leave = await h.membership(room_id, BOB, BOB, "leave")
        after = await h.send(room_id, ALICE, "after")
        page = await h.messages(BOB, room_id, limit=100)
        assert bodies(page["chunk"]) == ["while", "before"]
        assert page["chunk"][0]["event_id"] == leave.event_id
        start = await h.messages(BOB, room_id, backwards=False, limit=100)
        assert bodies(start["chunk"]) == ["before", "while"]
        assert after.event_id not in [e["event_id"] for e in start["chunk"]]
        assert "end" not in start
        # Even from a token past the leave.
        late = await h.messages(ALICE, room_id, limit=1)
        from_late = await h.messages(BOB, room_id, from_token=late["start"], limit=100)
        assert bodies(from_late["chunk"]) == ["while", "before"]
        # A departed member rejoining sees what was sent while they were away (shared).
        await h.membership(room_id, BOB, BOB, "join")
        back = await h.messages(BOB, room_id, limit=100)
        assert bodies(back["chunk"]) == ["after", "while", "before"]

    run(database, run_sync, scenario)


def test_context(database: Database, run_sync: Any) -> None:
    async def scenario(h: History) -> None:
        room_id = await room_with_messages(h, 20)
        events = await h.all_messages(ALICE, room_id, backwards=False, limit=100)
        target = next(e for e in events[0] if e.get("content", {}).get("body") == "m10")
        context = await h.pagination.get_context(
            requester(ALICE), room_id, target["event_id"], limit=6, event_filter=None
        )
        assert context["event"]["event_id"] == target["event_id"]
        assert bodies(context["events_before"]) == ["m9", "m8", "m7"]
        assert bodies(context["events_after"]) == ["m11", "m12", "m13"]
        state_types = {(e["type"], e.get("state_key")) for e in context["state"]}
        assert ("m.room.member", BOB) in state_types and ("m.room.create", "") in state_types
        before = await h.messages(ALICE, room_id, from_token=context["start"], limit=2)
        assert bodies(before["chunk"]) == ["m6", "m5"]
        after = await h.messages(
            ALICE, room_id, backwards=False, from_token=context["end"], limit=2
        )
        assert bodies(after["chunk"]) == ["m14", "m15"]

        lazy = RoomEventFilter.from_json({"lazy_load_members": True, "senders": [BOB]})
        filtered = await h.pagination.get_context(
            requester(ALICE), room_id, target["event_id"], limit=4, event_filter=lazy
        )
        assert bodies(filtered["events_before"]) == ["m9", "m7"]
        assert bodies(filtered["events_after"]) == ["m11", "m13"]
        # The target event is returned though the filter would exclude it (ALICE sent it).
        assert filtered["event"]["sender"] == ALICE
        assert [e["state_key"] for e in filtered["state"]] == [BOB]

        for event_id, room in (("$missing", room_id), (target["event_id"], "!other:hs.test")):
            with pytest.raises(MatrixError) as e:
                await h.pagination.get_context(
                    requester(ALICE), room, event_id, limit=4, event_filter=None
                )
            assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND")
        with pytest.raises(MatrixError) as e:
            await h.pagination.get_context(
                requester(CAROL), room_id, target["event_id"], limit=4, event_filter=None
            )
        assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")

    run(database, run_sync, scenario)


def test_timestamp_to_event(database: Database, run_sync: Any) -> None:
    async def scenario(h: History) -> None:
        room_id = await h.create_room()
        first = await h.send(room_id, ALICE, "one")
        second = await h.send(room_id, ALICE, "two")
        me = requester(ALICE)
        found = await h.pagination.timestamp_to_event(
            me, room_id, first.origin_server_ts + 1, backwards=False
        )
        assert found == {"event_id": second.event_id, "origin_server_ts": second.origin_server_ts}
        found = await h.pagination.timestamp_to_event(
            me, room_id, second.origin_server_ts - 1, backwards=True
        )
        assert found["event_id"] == first.event_id
        exact = await h.pagination.timestamp_to_event(
            me, room_id, first.origin_server_ts, backwards=True
        )
        assert exact["event_id"] == first.event_id
        for ts, backwards in ((second.origin_server_ts + 1, False), (0, True)):
            with pytest.raises(MatrixError) as e:
                await h.pagination.timestamp_to_event(me, room_id, ts, backwards=backwards)
            assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND")
        with pytest.raises(MatrixError) as e:
            await h.pagination.timestamp_to_event(requester(BOB), room_id, 0, backwards=False)
        assert e.value.status == 403

    run(database, run_sync, scenario)


def test_redacted_events_and_unsigned(database: Database, run_sync: Any) -> None:
    async def scenario(h: History) -> None:
        room_id = await h.create_room()
        await h.membership(room_id, BOB, BOB, "join")
        secret = await h.send(room_id, BOB, "secret")
        redaction = await h.creator.send(
            room_id, EventSpec("m.room.redaction", BOB, {"reason": "oops"}, redacts=secret.event_id)
        )
        topic1 = await h.state(room_id, ALICE, "m.room.topic", {"topic": "one"})
        await h.state(room_id, ALICE, "m.room.topic", {"topic": "two"})
        page = await h.messages(ALICE, room_id, limit=4)
        by_type = {e["event_id"]: e for e in page["chunk"]}
        redacted = by_type[secret.event_id]
        assert redacted["content"] == {}
        assert redacted["unsigned"]["redacted_because"]["event_id"] == redaction.event_id
        topic2 = page["chunk"][0]
        assert topic2["unsigned"]["prev_content"] == {"topic": "one"}
        assert topic2["unsigned"]["prev_sender"] == ALICE
        assert topic2["unsigned"]["replaces_state"] == topic1.event_id
        assert isinstance(topic2["unsigned"]["age"], int)

    run(database, run_sync, scenario)


def test_forgotten_room_cannot_be_paginated(database: Database, run_sync: Any) -> None:
    async def scenario(h: History) -> None:
        room_id = await room_with_messages(h, 2)
        await h.membership(room_id, BOB, BOB, "leave")
        assert bodies((await h.messages(BOB, room_id))["chunk"]) == ["m1", "m0"]
        await h.database.execute(
            "forget",
            "UPDATE room_memberships SET forgotten = TRUE WHERE user_id = ? AND room_id = ?",
            BOB,
            room_id,
        )
        with pytest.raises(MatrixError) as e:
            await h.messages(BOB, room_id)
        assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")

    run(database, run_sync, scenario)
