"""End-to-end encryption with matrix-nio[e2e] (vodozemac) against a running Hearth.

Two users in an encrypted room exchange messages both ways and each decrypts the other's;
then a new device of one of them appears (device list change in /sync, /keys/query), the
other starts a fresh Megolm session and the new device gets its key through a to-device
message (Olm, after claiming one of its one-time keys) and decrypts the next message.

Hearth runs in-process on the Twisted reactor thread; nio runs its asyncio loop in the
test thread and talks to Hearth over HTTP like any client would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    LoginResponse,
    MegolmEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

from tests.integration.harness import RunningHomeserver, make_config, start_homeserver

ENCRYPTION = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


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


def _client(base_url: str, user: str, store: Path) -> AsyncClient:
    store.mkdir(parents=True, exist_ok=True)
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    return AsyncClient(base_url, user, store_path=str(store), config=config)


async def _settle(client: AsyncClient) -> SyncResponse:
    """One sync, then whatever key upkeep nio asks for (upload, query, claim)."""
    synced = await client.sync(timeout=0)
    assert isinstance(synced, SyncResponse), synced
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    return synced


async def _texts(client: AsyncClient, room_id: str, wanted: str) -> list[str]:
    """Sync until ``wanted`` arrives decrypted; every text seen (undecryptable: MEGOLM)."""
    seen: list[str] = []
    for _ in range(5):
        synced = await _settle(client)
        room = synced.rooms.join.get(room_id)
        for event in room.timeline.events if room is not None else []:
            if isinstance(event, RoomMessageText):
                assert event.decrypted, "a message in an encrypted room arrived in clear"
                seen.append(event.body)
            elif isinstance(event, MegolmEvent):
                seen.append("MEGOLM")
        if wanted in seen:
            break
    return seen


async def _send(client: AsyncClient, room_id: str, body: str) -> None:
    sent = await client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": body},
        ignore_unverified_devices=True,
    )
    assert isinstance(sent, RoomSendResponse), sent


async def _scenario(base_url: str, stores: Path) -> None:
    alice = _client(base_url, "alice", stores / "alice")
    bob = _client(base_url, "bob", stores / "bob")
    alice_phone = _client(base_url, "@alice:hs.test", stores / "alice-phone")
    try:
        for client, name in ((alice, "alice"), (bob, "bob")):
            registered = await client.register(name, f"{name}-password", f"{name} laptop")
            assert isinstance(registered, RegisterResponse), registered
            await _settle(client)

        created = await alice.room_create(name="secret", initial_state=[ENCRYPTION])
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id
        invited = await alice.room_invite(room_id, bob.user_id)
        assert isinstance(invited, RoomInviteResponse), invited
        await _settle(bob)
        joined = await bob.join(room_id)
        assert isinstance(joined, JoinResponse), joined
        await _settle(bob)
        await _settle(alice)
        assert alice.rooms[room_id].encrypted and bob.rooms[room_id].encrypted

        await _send(alice, room_id, "hello bob, secretly")
        assert "hello bob, secretly" in await _texts(bob, room_id, "hello bob, secretly")
        await _send(bob, room_id, "hello alice, secretly")
        assert "hello alice, secretly" in await _texts(alice, room_id, "hello alice, secretly")

        # Alice logs in on a new device; it uploads its keys.
        login = await alice_phone.login("alice-password", device_name="alice phone")
        assert isinstance(login, LoginResponse), login
        await _settle(alice_phone)
        # Bob hears of the new device through device_lists.changed and /keys/query.
        for _ in range(5):
            await _settle(bob)
            if alice_phone.device_id in bob.device_store[alice.user_id]:
                break
        assert alice_phone.device_id in bob.device_store[alice.user_id]
        # The old session was never shared with the phone: Bob starts a fresh one, whose
        # key goes to every device of the room's members, the phone included.
        bob.invalidate_outbound_session(room_id)
        await _send(bob, room_id, "hello alice's phone")
        assert "hello alice's phone" in await _texts(alice_phone, room_id, "hello alice's phone")
        assert "hello alice's phone" in await _texts(alice, room_id, "hello alice's phone")
    finally:
        await alice.close()
        await bob.close()
        await alice_phone.close()


def test_encrypted_conversation_and_new_device(hs: RunningHomeserver, tmp_path: Path) -> None:
    asyncio.run(_scenario(f"http://127.0.0.1:{hs.port}", tmp_path / "stores"))
