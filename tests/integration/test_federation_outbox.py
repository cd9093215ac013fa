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
