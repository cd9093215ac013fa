"""matrix-nio, a real client library, against a running Hearth over loopback.

Hearth runs in-process on the Twisted reactor thread; nio runs its own asyncio loop in
the test thread and talks to Hearth over HTTP like any client would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nio import (
    AsyncClient,
    JoinResponse,
    LoginResponse,
    MessageDirection,
    ProfileSetDisplayNameResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomGetStateEventResponse,
    RoomInviteResponse,
    RoomMessagesResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
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
        rc_login={"address": {"per_second": 0, "burst_count": 0}},
    )
    running = start_homeserver(config, reactor_thread, run_sync)
    yield running
    running.stop()


async def _conversation(base_url: str) -> None:
    alice = AsyncClient(base_url, "alice")
    bob = AsyncClient(base_url, "bob")
    try:
        registered = await alice.register("alice", "alice-password", "alice laptop")
        assert isinstance(registered, RegisterResponse), registered
        registered = await bob.register("bob", "bob-password", "bob phone")
        assert isinstance(registered, RegisterResponse), registered
        # A second session by password login, as a client does after a restart.
        bob_again = AsyncClient(base_url, "@bob:hs.test")
        login = await bob_again.login("bob-password", device_name="bob desktop")
        assert isinstance(login, LoginResponse), login
        await bob_again.close()

        created = await alice.room_create(name="nio room", topic="talking")
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id
        invited = await alice.room_invite(room_id, bob.user_id)
        assert isinstance(invited, RoomInviteResponse), invited

        first = await bob.sync(timeout=0)
        assert isinstance(first, SyncResponse), first
        assert room_id in first.rooms.invite
        joined = await bob.join(room_id)
        assert isinstance(joined, JoinResponse), joined

        for i in range(15):
            sent = await alice.room_send(
                room_id, "m.room.message", {"msgtype": "m.text", "body": f"hello {i}"}
            )
            assert isinstance(sent, RoomSendResponse), sent
        reply = await bob.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "hi alice"}
        )
        assert isinstance(reply, RoomSendResponse), reply

        synced = await alice.sync(timeout=0, full_state=True)
        assert isinstance(synced, SyncResponse), synced
        timeline = synced.rooms.join[room_id].timeline
        texts = [e.body for e in timeline.events if isinstance(e, RoomMessageText)]
        assert texts[-1] == "hi alice"
        assert timeline.limited
        assert alice.rooms[room_id].display_name == "nio room"
        assert alice.rooms[room_id].topic == "talking"

        # Page back through history from the timeline's start.
        history = await alice.room_messages(
            room_id, start=timeline.prev_batch, direction=MessageDirection.back, limit=20
        )
        assert isinstance(history, RoomMessagesResponse), history
        older = [e.body for e in history.chunk if isinstance(e, RoomMessageText)]
        shown = set(texts)
        expected = [f"hello {i}" for i in range(14, -1, -1) if f"hello {i}" not in shown]
        assert older == expected

        renamed = await bob.set_displayname("Bobby")
        assert isinstance(renamed, ProfileSetDisplayNameResponse), renamed
        member = await alice.room_get_state_event(room_id, "m.room.member", bob.user_id)
        assert isinstance(member, RoomGetStateEventResponse), member
        assert member.content["displayname"] == "Bobby"
        assert member.content["membership"] == "join"

        after = await alice.sync(timeout=0)
        assert isinstance(after, SyncResponse), after
        assert alice.rooms[room_id].user_name(bob.user_id) == "Bobby"
    finally:
        await alice.close()
        await bob.close()


def test_two_nio_clients_talk_through_hearth(hs: RunningHomeserver) -> None:
    asyncio.run(_conversation(f"http://127.0.0.1:{hs.port}"))
