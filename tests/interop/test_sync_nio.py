"""Two matrix-nio clients keep each other in view through Hearth's /sync: messages, typing,
read receipts and unread counts, as a user sees them in a real client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nio import (
    AsyncClient,
    ReceiptEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    RoomTypingResponse,
    SyncResponse,
    TypingNoticeEvent,
    UpdateReceiptMarkerResponse,
)

from tests.integration.harness import RunningHomeserver, make_config, start_homeserver


@pytest.fixture
def hs(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    config = make_config(
        tmp_path,
        db_config,
        enable_registration=True,
        enable_registration_without_verification=True,
        rc_message={"per_second": 0, "burst_count": 0},
        rc_registration={"per_second": 0, "burst_count": 0},
    )
    running = start_homeserver(config, reactor_thread, run_sync)
    yield running
    running.stop()


async def sync_until(client: AsyncClient, room_id: str, predicate: Any) -> SyncResponse:
    """Long-poll until a sync shows what ``predicate`` looks for in the room."""
    for _ in range(10):
        response = await client.sync(timeout=5000)
        assert isinstance(response, SyncResponse), response
        room = response.rooms.join.get(room_id)
        if room is not None and predicate(room):
            return response
    raise AssertionError("the expected update never arrived")


async def _scenario(base_url: str) -> None:
    alice = AsyncClient(base_url, "alice")
    bob = AsyncClient(base_url, "bob")
    try:
        for client, name in ((alice, "alice"), (bob, "bob")):
            registered = await client.register(name, f"{name}-password", f"{name} device")
            assert isinstance(registered, RegisterResponse), registered
        created = await alice.room_create(name="live room", invite=[bob.user_id])
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id
        await bob.sync(timeout=0)
        await bob.join(room_id)
        await alice.sync(timeout=0)
        await bob.sync(timeout=0)

        # Bob writes two messages, one mentioning Alice: both count, the mention highlights.
        for body, mentions in (("hello", {}), ("hey alice", {"user_ids": [alice.user_id]})):
            sent = await bob.room_send(
                room_id,
                "m.room.message",
                {"msgtype": "m.text", "body": body, "m.mentions": mentions},
            )
            assert isinstance(sent, RoomSendResponse), sent
        unread = await sync_until(
            alice, room_id, lambda room: room.unread_notifications.notification_count == 2
        )
        room = unread.rooms.join[room_id]
        assert room.unread_notifications.highlight_count == 1
        texts = [e.body for e in room.timeline.events if isinstance(e, RoomMessageText)]
        assert texts == ["hello", "hey alice"]
        last_event_id = room.timeline.events[-1].event_id

        # Alice types: Bob's long-poll sees it.
        typing = await alice.room_typing(room_id, True, timeout=10000)
        assert isinstance(typing, RoomTypingResponse), typing
        seen = await sync_until(
            bob,
            room_id,
            lambda room: any(
                isinstance(e, TypingNoticeEvent) and alice.user_id in e.users
                for e in room.ephemeral
            ),
        )
        assert seen.rooms.join[room_id]

        # Alice reads: her count drops to zero and Bob sees her receipt.
        receipt = await alice.update_receipt_marker(room_id, last_event_id)
        assert isinstance(receipt, UpdateReceiptMarkerResponse), receipt
        await sync_until(
            alice, room_id, lambda room: room.unread_notifications.notification_count == 0
        )

        def has_receipt(room: Any) -> bool:
            for event in room.ephemeral:
                if isinstance(event, ReceiptEvent):
                    for r in event.receipts:
                        if r.user_id == alice.user_id and r.event_id == last_event_id:
                            return True
            return False

        await sync_until(bob, room_id, has_receipt)
    finally:
        await alice.close()
        await bob.close()


def test_two_nio_clients_see_messages_typing_receipts_and_counts(hs: RunningHomeserver) -> None:
    asyncio.run(_scenario(f"http://127.0.0.1:{hs.port}"))
