"""Durable EDUs (to-device messages) survive a restart: they stay in the outbox until a
transaction carrying them succeeds, and a restarted sender queues them again."""

from __future__ import annotations

from typing import Any

from signedjson.key import generate_signing_key

from federation.client import FederationClient
from federation.discovery import StaticResolver
from federation.ip_filter import IPFilter
from federation.sender import FederationSender
from storage.events import EventStore
from storage.federation_sender import FederationSenderStore
from tests.integration.history_fixtures import ALICE, History


def make_sender(database: Any, reactor: Any) -> FederationSender:
    # A real client aimed at a server that does not exist: every transaction fails.
    client = FederationClient(
        reactor,
        "hs.test",
        generate_signing_key("t1"),
        resolver=StaticResolver({}, {}),
        ip_filter=IPFilter([], []),
        verify_certificates=False,
    )
    return FederationSender(
        server_name="hs.test",
        store=EventStore(database),
        sender_store=FederationSenderStore(database),
        transport=client,
        reactor=reactor,
        min_retry_ms=60_000,
    )


def test_to_device_edus_wait_in_the_outbox_across_a_restart(
    database: Any, reactor_thread: Any, run_sync: Any
) -> None:
    content = {"sender": "@a:hs.test", "type": "m.room_key", "message_id": "m1", "messages": {}}

    async def queue_then_restart() -> list[Any]:
        first = make_sender(database, reactor_thread)
        await first.start()
        await first.send_edu_durably("127.0.0.1:9", "m.direct_to_device", content)
        first.stop()
        store = FederationSenderStore(database)
        assert [row[1:] for row in await store.get_outbox()] == [
            ("127.0.0.1:9", "m.direct_to_device", content)
        ]
        second = make_sender(database, reactor_thread)
        await second.start()
        queued = list(second._queues["127.0.0.1:9"].edus)
        second.stop()
        return queued

    queued = run_sync(queue_then_restart())
    assert [(e["edu_type"], e["content"]) for e in queued] == [("m.direct_to_device", content)]


def test_an_event_goes_only_to_the_servers_in_the_room_at_it(
    database: Any, reactor_thread: Any, run_sync: Any
) -> None:
    """The sender may get to an event after the room changed (under load it often does):
    a server that joined since must not be sent it, one that left since still is."""
    history = History(database)
    bob, carol = "@bob:b.test", "@carol:c.test"

    async def scenario() -> tuple[dict[int, set[str]], dict[str, list[str]]]:
        await history.start()
        room_id = await history.create_room("joined")
        await history.membership(room_id, carol, carol, "join")
        before = await history.send(room_id, ALICE, "before bob")
        await history.membership(room_id, bob, bob, "join")
        await history.membership(room_id, carol, carol, "leave")
        after = await history.send(room_id, ALICE, "after bob")
        positions = [int(e.internal_metadata["stream_ordering"]) for e in (before, after)]
        store = FederationSenderStore(database)
        joined_at = await store.get_joined_servers_at(room_id, positions)

        sender = make_sender(database, reactor_thread)
        sender.stop()  # nothing leaves the queues
        # Queued late, when the room has already changed twice.
        await sender._queue_room_events(room_id, [before, after])
        queued = {d: [e.event_id for e in q.pdus] for d, q in sender._queues.items()}
        names = {before.event_id: "before", after.event_id: "after"}
        return (
            {i: servers for i, servers in enumerate(joined_at[p] for p in positions)},
            {d: [names[e] for e in ids] for d, ids in queued.items()},
        )

    joined_at, queued = run_sync(scenario())
    assert joined_at == {0: {"hs.test", "c.test"}, 1: {"hs.test", "b.test"}}
    assert queued == {"c.test": ["before"], "b.test": ["after"]}


def test_catch_up_sends_the_newest_event_queued_for_the_destination(
    database: Any, reactor_thread: Any, run_sync: Any
) -> None:
    """A destination that missed transactions is sent the newest event queued for it,
    never an older one of ours from before it joined (it would have it in full)."""
    history = History(database)
    bob = "@bob:b.test"

    async def scenario() -> tuple[list[str], list[str]]:
        await history.start()
        room_id = await history.create_room("joined")
        before = await history.send(room_id, ALICE, "before bob")
        join = await history.membership(room_id, bob, bob, "join")
        sender = make_sender(database, reactor_thread)
        sender.stop()
        await sender._queue_room_events(room_id, [before])
        # The join came from b.test's send_join; we pass it on to the room's servers.
        await sender._queue_room_events(room_id, [join])
        store = FederationSenderStore(database)
        first = list(await store.get_catch_up_events("b.test"))
        after = await history.send(room_id, ALICE, "after bob")
        await sender._queue_room_events(room_id, [after])
        await sender._queue_room_events(room_id, [before])  # late, out of order
        second = list(await store.get_catch_up_events("b.test"))
        names = {before.event_id: "before", join.event_id: "join", after.event_id: "after"}
        return [names[e] for e in first], [names[e] for e in second]

    first, second = run_sync(scenario())
    assert first == ["join"]
    assert second == ["after"]
