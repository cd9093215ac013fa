"""History visibility for each setting, for users who were invited, joined, left or never
came, through ``filter_events_for_user`` and through /messages, on both databases."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.errors import MatrixError
from homeserver.events.model import Event
from homeserver.handlers.visibility import can_see_event, filter_events_for_user
from storage.engine import Database
from tests.integration.history_fixtures import ALICE, BOB, CAROL, History, bodies


async def invite_join_leave_room(h: History, visibility: str) -> tuple[str, dict[str, Event]]:
    """m1, invite Bob, m2, Bob joins, m3, Bob leaves, m4."""
    room_id = await h.create_room(visibility)
    events = {"m1": await h.send(room_id, ALICE, "m1")}
    events["invite"] = await h.membership(room_id, ALICE, BOB, "invite")
    events["m2"] = await h.send(room_id, ALICE, "m2")
    events["join"] = await h.membership(room_id, BOB, BOB, "join")
    events["m3"] = await h.send(room_id, ALICE, "m3")
    events["leave"] = await h.membership(room_id, BOB, BOB, "leave")
    events["m4"] = await h.send(room_id, ALICE, "m4")
    return room_id, events


# What Bob (invited, joined, left) may see, by the filter itself and by /messages (which
# also stops at his leave).
EXPECTED_BOB = {
    "world_readable": (["m1", "m2", "m3", "m4"], ["m1", "m2", "m3"]),
    "shared": (["m1", "m2", "m3"], ["m1", "m2", "m3"]),
    "invited": (["m2", "m3"], ["m2", "m3"]),
    "joined": (["m3"], ["m3"]),
}


@pytest.mark.parametrize("visibility", sorted(EXPECTED_BOB))
def test_each_setting(database: Database, run_sync: Any, visibility: str) -> None:
    async def scenario() -> None:
        h = History(database)
        await h.start()
        room_id, events = await invite_join_leave_room(h, visibility)
        messages = [events[name] for name in ("m1", "m2", "m3", "m4")]
        by_filter, by_messages = EXPECTED_BOB[visibility]

        visible = await filter_events_for_user(h.history, BOB, messages)
        assert [e.content["body"] for e in visible] == by_filter
        page = await h.messages(BOB, room_id, backwards=False, limit=100)
        assert bodies(page["chunk"]) == by_messages
        # Bob always sees his own join and his leave; his invite only where invitees see.
        own = {e["event_id"] for e in page["chunk"]}
        assert events["join"].event_id in own and events["leave"].event_id in own
        assert (events["invite"].event_id in own) == (
            visibility in ("world_readable", "shared", "invited")
        )

        # Alice, joined throughout, sees everything.
        assert await filter_events_for_user(h.history, ALICE, messages) == messages

        # Carol never joined: world-readable rooms can be peeked into, others are closed.
        carol = await filter_events_for_user(h.history, CAROL, messages)
        if visibility == "world_readable":
            assert carol == messages
            peek = await h.messages(CAROL, room_id, limit=100)
            assert bodies(peek["chunk"]) == ["m4", "m3", "m2", "m1"]
        else:
            assert carol == []
            with pytest.raises(MatrixError) as e:
                await h.messages(CAROL, room_id)
            assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")
        for name in ("m1", "m2", "m3", "m4"):
            assert await can_see_event(h.history, BOB, events[name]) == (name in by_filter)

    run_sync(scenario(), timeout=120)


def test_default_is_shared_and_later_joiners_see_earlier_history(
    database: Database, run_sync: Any
) -> None:
    async def scenario() -> None:
        h = History(database)
        await h.start()
        room_id = await h.create_room(None)
        early = await h.send(room_id, ALICE, "early")
        assert await filter_events_for_user(h.history, BOB, [early]) == []
        await h.membership(room_id, BOB, BOB, "join")
        assert await filter_events_for_user(h.history, BOB, [early]) == [early]
        # An unknown setting also reads as shared.
        await h.state(room_id, ALICE, "m.room.history_visibility", {"history_visibility": "x"})
        late = await h.send(room_id, ALICE, "late")
        assert await can_see_event(h.history, BOB, late)

    run_sync(scenario(), timeout=120)


def test_visibility_changes_are_seen_from_either_side(database: Database, run_sync: Any) -> None:
    async def scenario() -> None:
        h = History(database)
        await h.start()
        room_id = await h.create_room("joined")
        m1 = await h.send(room_id, ALICE, "m1")
        to_world = await h.state(
            room_id, ALICE, "m.room.history_visibility", {"history_visibility": "world_readable"}
        )
        m2 = await h.send(room_id, ALICE, "m2")
        to_joined = await h.state(
            room_id, ALICE, "m.room.history_visibility", {"history_visibility": "joined"}
        )
        m3 = await h.send(room_id, ALICE, "m3")
        visible = await filter_events_for_user(h.history, CAROL, [m1, to_world, m2, to_joined, m3])
        assert visible == [to_world, m2, to_joined]
        # Not world-readable now: Carol cannot page at all.
        with pytest.raises(MatrixError):
            await h.messages(CAROL, room_id)

    run_sync(scenario(), timeout=120)


def test_kicked_banned_and_rejected(database: Database, run_sync: Any) -> None:
    async def scenario() -> None:
        h = History(database)
        await h.start()
        room_id = await h.create_room("joined")
        await h.membership(room_id, BOB, BOB, "join")
        await h.membership(room_id, CAROL, CAROL, "join")
        during = await h.send(room_id, ALICE, "during")
        kick = await h.membership(room_id, ALICE, BOB, "leave")
        ban = await h.membership(room_id, ALICE, CAROL, "ban")
        after = await h.send(room_id, ALICE, "after")
        # Bob was kicked (a departed member): history up to the kick, the kick included.
        page = await h.messages(BOB, room_id, limit=100)
        assert page["chunk"][0]["event_id"] == kick.event_id
        assert bodies(page["chunk"]) == ["during"]
        assert await filter_events_for_user(h.history, BOB, [during, after]) == [during]
        # Carol was banned: no paginating (as Synapse), though the filter shows her what
        # she was joined for and her ban (judged by her membership before it).
        with pytest.raises(MatrixError) as e:
            await h.messages(CAROL, room_id)
        assert e.value.status == 403
        visible = await filter_events_for_user(h.history, CAROL, [during, ban, after])
        assert visible == [during, ban]

        # An invite rejected under `joined`: the invitee sees their rejection, nothing else.
        dave = "@dave:hs.test"
        invite = await h.membership(room_id, ALICE, dave, "invite")
        between = await h.send(room_id, ALICE, "between")
        reject = await h.membership(room_id, dave, dave, "leave")
        assert await filter_events_for_user(h.history, dave, [invite, between, reject]) == [reject]

    run_sync(scenario(), timeout=120)


def test_many_events_are_checked_in_a_few_queries(database: Database, run_sync: Any) -> None:
    async def scenario() -> None:
        h = History(database)
        await h.start()
        room_id = await h.create_room("joined")
        events = []
        for i in range(60):
            if i % 10 == 0:
                # New state groups along the way.
                events.append(await h.state(room_id, ALICE, "m.room.topic", {"topic": str(i)}))
            events.append(await h.send(room_id, ALICE, f"m{i}"))
        await h.membership(room_id, BOB, BOB, "join")
        calls: list[str] = []
        original = h.database.run_interaction

        async def counting(desc: str, *args: Any, **kwargs: Any) -> Any:
            calls.append(desc)
            return await original(desc, *args, **kwargs)

        h.database.run_interaction = counting  # type: ignore[method-assign]
        try:
            assert await filter_events_for_user(h.history, BOB, events) == []
            assert await filter_events_for_user(h.history, ALICE, events) == events
        finally:
            h.database.run_interaction = original  # type: ignore[method-assign]
        assert len(calls) <= 8, calls

    run_sync(scenario(), timeout=120)


@pytest.mark.parametrize("visibility", sorted(EXPECTED_BOB))
def test_state_known_in_memory_matches_the_database(
    database: Database, run_sync: Any, visibility: str
) -> None:
    """The process that wrote the room answers from memory; a fresh one (as after a
    restart) from the database: the same state at every event, the same verdicts."""

    async def scenario() -> None:
        writer = History(database)
        await writer.start()
        _, events = await invite_join_leave_room(writer, visibility)
        timeline = list(events.values())
        ids = [e.event_id for e in timeline]
        keys = [("m.room.history_visibility", ""), ("m.room.member", BOB)]
        in_memory = writer.history.cached_state_at_events(ids, keys)
        assert in_memory is not None  # everything was written by this process

        fresh = History(database)
        await fresh.start()
        assert fresh.history.cached_state_at_events(ids, keys) is None
        from_database = await fresh.history.get_state_at_events(ids, keys)
        assert from_database == in_memory
        # Read once, the answer is then known in memory.
        assert fresh.history.cached_state_at_events(ids, keys) == from_database

        by_filter, _ = EXPECTED_BOB[visibility]
        for h in (writer, History(database)):
            visible = await filter_events_for_user(h.history, BOB, timeline)
            bodies_seen = [e.content["body"] for e in visible if e.type == "m.room.message"]
            assert bodies_seen == by_filter

    run_sync(scenario())
