"""EDUs between two Hearth servers sharing a room, over real TLS: typing, read receipts,
presence, device list updates (with the prev_id chain and resync) and cross-signing key
updates, each seen in the other server's /sync."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration import federation_helpers
from tests.integration.e2e_helpers import Device, cross_signing_keys, post, sync
from tests.integration.federation_helpers import FederatedServer, Federation
from tests.integration.harness import RegisteredUser

db_configs = federation_helpers.db_configs
federation = federation_helpers.federation

V3 = "/_matrix/client/v3"


@dataclass
class SharedRoom:
    a: FederatedServer
    b: FederatedServer
    alice: RegisteredUser  # on a, created the room
    bob: RegisteredUser  # on b, joined over federation
    room_id: str


@pytest.fixture
def shared(federation: Federation) -> SharedRoom:
    a = federation.start("a")
    b = federation.start("b")
    alice = a.register_user("alice")
    bob = b.register_user("bob")
    created = post(a, alice.access_token, "/createRoom", {"preset": "public_chat"})
    assert created.status == 200, created.body
    room_id = created.json()["room_id"]
    joined = post(
        b, bob.access_token, f"/join/{quote(room_id)}?server_name={quote(a.server_name)}", {}
    )
    assert joined.status == 200, joined.body
    return SharedRoom(a, b, alice, bob, room_id)


def sync_until(
    server: FederatedServer,
    user: RegisteredUser,
    found: Callable[[dict[str, Any]], Any],
    since: str | None = None,
    deadline_s: float = 15.0,
) -> Any:
    """Long-poll /sync until ``found(response)`` is truthy; that value."""
    end = time.monotonic() + deadline_s
    while True:
        response = sync(server, user.access_token, since, timeout=1000)
        value = found(response)
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not seen in /sync within {deadline_s}s: {response}")
        since = response["next_batch"]


def ephemeral(response: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = response.get("rooms", {}).get("join", {}).get(room_id, {})
    events = room.get("ephemeral", {}).get("events", [])
    return [e for e in events if e["type"] == event_type]


def typing_users(room_id: str) -> Callable[[dict[str, Any]], Any]:
    def found(response: dict[str, Any]) -> Any:
        events = ephemeral(response, room_id, "m.typing")
        return events[-1]["content"]["user_ids"] or ["<nobody>"] if events else None

    return found


def set_typing(server: FederatedServer, user: RegisteredUser, room_id: str, typing: bool) -> None:
    result = server.request(
        "PUT",
        f"{V3}/rooms/{quote(room_id)}/typing/{quote(user.user_id)}",
        access_token=user.access_token,
        body={"typing": typing, "timeout": 30_000},
    )
    assert result.status == 200, result.body


def send_message(server: FederatedServer, user: RegisteredUser, room_id: str, body: str) -> str:
    result = server.request(
        "PUT",
        f"{V3}/rooms/{quote(room_id)}/send/m.room.message/{body}",
        access_token=user.access_token,
        body={"msgtype": "m.text", "body": body},
    )
    assert result.status == 200, result.body
    event_id: str = result.json()["event_id"]
    return event_id


def test_typing_crosses_both_ways(shared: SharedRoom) -> None:
    s = shared
    since_b = sync(s.b, s.bob.access_token)["next_batch"]
    since_a = sync(s.a, s.alice.access_token)["next_batch"]

    set_typing(s.a, s.alice, s.room_id, True)
    assert sync_until(s.b, s.bob, typing_users(s.room_id), since_b) == [s.alice.user_id]

    set_typing(s.b, s.bob, s.room_id, True)
    assert s.bob.user_id in sync_until(
        s.a,
        s.alice,
        lambda r: [u for u in (typing_users(s.room_id)(r) or []) if u == s.bob.user_id],
        since_a,
    )

    since_b = sync(s.b, s.bob.access_token)["next_batch"]
    set_typing(s.a, s.alice, s.room_id, False)
    assert sync_until(
        s.b,
        s.bob,
        lambda r: (typing_users(s.room_id)(r) or [None]) == [s.bob.user_id],
        since_b,
    )


def test_typing_from_a_server_for_someone_not_joined_is_ignored(shared: SharedRoom) -> None:
    s = shared
    handler = s.a.homeserver.transaction_handler
    edus = [
        {
            "edu_type": "m.typing",
            "content": {"room_id": s.room_id, "user_id": f"@eve:{s.b.server_name}", "typing": True},
        },
        # Another server's user: b cannot speak for them.
        {
            "edu_type": "m.typing",
            "content": {"room_id": s.room_id, "user_id": s.alice.user_id, "typing": True},
        },
    ]
    s.a.run_sync(handler.on_transaction(s.b.server_name, "forged", {"pdus": [], "edus": edus}))

    typing = s.a.homeserver.typing_handler.get_typing_events([s.room_id], None)
    assert typing == {}


def test_receipts_cross_both_ways(shared: SharedRoom) -> None:
    s = shared
    event_id = send_message(s.a, s.alice, s.room_id, "hello")
    # Once bob's server has the event, bob reads it.
    sync_until(
        s.b,
        s.bob,
        lambda r: any(
            e["event_id"] == event_id
            for e in r.get("rooms", {})
            .get("join", {})
            .get(s.room_id, {})
            .get("timeline", {})
            .get("events", [])
        ),
    )
    since_a = sync(s.a, s.alice.access_token)["next_batch"]
    sent = s.b.request(
        "POST",
        f"{V3}/rooms/{quote(s.room_id)}/receipt/m.read/{quote(event_id)}",
        access_token=s.bob.access_token,
        body={},
    )
    assert sent.status == 200, sent.body

    def bobs_receipt(response: dict[str, Any]) -> Any:
        for event in ephemeral(response, s.room_id, "m.receipt"):
            read = event["content"].get(event_id, {}).get("m.read", {})
            if s.bob.user_id in read:
                return read[s.bob.user_id]
        return None

    assert "ts" in sync_until(s.a, s.alice, bobs_receipt, since_a)

    # And back: alice's receipt on her own server reaches bob's.
    reply = send_message(s.b, s.bob, s.room_id, "hi")
    sync_until(
        s.a,
        s.alice,
        lambda r: any(
            e["event_id"] == reply
            for e in r.get("rooms", {})
            .get("join", {})
            .get(s.room_id, {})
            .get("timeline", {})
            .get("events", [])
        ),
    )
    since_b = sync(s.b, s.bob.access_token)["next_batch"]
    sent = s.a.request(
        "POST",
        f"{V3}/rooms/{quote(s.room_id)}/receipt/m.read/{quote(reply)}",
        access_token=s.alice.access_token,
        body={},
    )
    assert sent.status == 200, sent.body

    def alices_receipt(response: dict[str, Any]) -> Any:
        for event in ephemeral(response, s.room_id, "m.receipt"):
            if s.alice.user_id in event["content"].get(reply, {}).get("m.read", {}):
                return True
        return None

    assert sync_until(s.b, s.bob, alices_receipt, since_b)


def test_private_receipts_stay_home(shared: SharedRoom) -> None:
    s = shared
    event_id = send_message(s.a, s.alice, s.room_id, "secret")
    sync_until(
        s.b,
        s.bob,
        lambda r: any(
            e["event_id"] == event_id
            for e in r.get("rooms", {})
            .get("join", {})
            .get(s.room_id, {})
            .get("timeline", {})
            .get("events", [])
        ),
    )
    sent = s.b.request(
        "POST",
        f"{V3}/rooms/{quote(s.room_id)}/receipt/m.read.private/{quote(event_id)}",
        access_token=s.bob.access_token,
        body={},
    )
    assert sent.status == 200
    # A public receipt sent after it arrives; the private one never does.
    marker = send_message(s.b, s.bob, s.room_id, "marker")
    sync_until(
        s.a,
        s.alice,
        lambda r: any(
            e["event_id"] == marker
            for e in r.get("rooms", {})
            .get("join", {})
            .get(s.room_id, {})
            .get("timeline", {})
            .get("events", [])
        ),
    )
    s.b.request(
        "POST",
        f"{V3}/rooms/{quote(s.room_id)}/receipt/m.read/{quote(marker)}",
        access_token=s.bob.access_token,
        body={},
    )

    def receipts(response: dict[str, Any]) -> Any:
        found = {}
        for event in ephemeral(response, s.room_id, "m.receipt"):
            for eid, by_type in event["content"].items():
                for rtype, users in by_type.items():
                    if s.bob.user_id in users:
                        found[(eid, rtype)] = True
        return found if (marker, "m.read") in found else None

    seen = sync_until(s.a, s.alice, receipts)
    assert (event_id, "m.read.private") not in seen


def test_presence_crosses_to_the_other_server(shared: SharedRoom) -> None:
    s = shared
    since_a = sync(s.a, s.alice.access_token)["next_batch"]
    result = s.b.request(
        "PUT",
        f"{V3}/presence/{quote(s.bob.user_id)}/status",
        access_token=s.bob.access_token,
        body={"presence": "online", "status_msg": "from b"},
    )
    assert result.status == 200, result.body

    def bobs_presence(response: dict[str, Any]) -> Any:
        for event in response.get("presence", {}).get("events", []):
            if event["sender"] == s.bob.user_id and event["content"].get("status_msg") == "from b":
                return event["content"]
        return None

    content = sync_until(s.a, s.alice, bobs_presence, since_a)
    assert content["presence"] == "online"


def _upload_device_keys(server: FederatedServer, user: RegisteredUser) -> Device:
    device = Device(user)
    result = post(server, user.access_token, "/keys/upload", {"device_keys": device.device_keys()})
    assert result.status == 200, result.body
    return device


def changed_includes(user_id: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: user_id in r.get("device_lists", {}).get("changed", [])


def test_device_list_updates_reach_the_other_server(shared: SharedRoom) -> None:
    s = shared
    remote_store = s.a.homeserver.remote_keys.store
    since_a = sync(s.a, s.alice.access_token)["next_batch"]

    first = _upload_device_keys(s.b, s.bob)
    assert sync_until(s.a, s.alice, changed_includes(s.bob.user_id), since_a)
    # The first update for an untracked user is a full resync.
    cached = s.a.run_sync(remote_store.get_cached([s.bob.user_id]))[s.bob.user_id]
    assert cached.devices == {first.device_id: first.device_keys()}

    # A second device: the update's prev_id names the first, so it is applied as is.
    remote_keys = s.a.homeserver.remote_keys
    resyncs: list[str] = []
    real_resync = remote_keys._resync

    async def counted(user_id: str) -> int | None:
        resyncs.append(user_id)
        return await real_resync(user_id)

    remote_keys._resync = counted  # type: ignore[method-assign]
    since_a = sync(s.a, s.alice.access_token)["next_batch"]
    second_login = s.b.login(s.bob.user_id)
    second_user = RegisteredUser(
        s.bob.user_id, second_login["access_token"], second_login["device_id"], "password"
    )
    second = _upload_device_keys(s.b, second_user)
    assert sync_until(s.a, s.alice, changed_includes(s.bob.user_id), since_a)
    latest = s.b.run_sync(s.b.homeserver.remote_keys.store.get_latest_local_change(s.bob.user_id))
    deadline = time.monotonic() + 10
    while s.a.run_sync(remote_store.get_position(s.bob.user_id)) != latest[0]:
        assert time.monotonic() < deadline, "the second update was not applied"
        time.sleep(0.05)
    assert resyncs == []
    cached = s.a.run_sync(remote_store.get_cached([s.bob.user_id]))[s.bob.user_id]
    assert cached.devices == {
        first.device_id: first.device_keys(),
        second.device_id: second.device_keys(),
    }

    # Alice's key query for bob sees both devices.
    keys = post(s.a, s.alice.access_token, "/keys/query", {"device_keys": {s.bob.user_id: []}})
    assert set(keys.json()["device_keys"][s.bob.user_id]) == {first.device_id, second.device_id}


def test_a_gap_in_the_chain_means_a_resync(shared: SharedRoom) -> None:
    s = shared
    device = _upload_device_keys(s.b, s.bob)
    remote_store = s.a.homeserver.remote_keys.store
    deadline = time.monotonic() + 10
    while s.a.run_sync(remote_store.get_position(s.bob.user_id)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    known = s.a.run_sync(remote_store.get_position(s.bob.user_id))
    since_a = sync(s.a, s.alice.access_token)["next_batch"]

    # An update that claims a device bob does not have, after an update a never saw.
    forged = {
        "edu_type": "m.device_list_update",
        "content": {
            "user_id": s.bob.user_id,
            "device_id": "PHANTOM",
            "stream_id": known + 10,
            "prev_id": [known + 5],
            "deleted": False,
            "keys": {"user_id": s.bob.user_id, "device_id": "PHANTOM"},
        },
    }
    s.a.run_sync(
        s.a.homeserver.transaction_handler.on_transaction(
            s.b.server_name, "gap", {"pdus": [], "edus": [forged]}
        )
    )

    # Resynced from bob's server: the list is what it really is.
    cached = s.a.run_sync(remote_store.get_cached([s.bob.user_id]))[s.bob.user_id]
    assert cached.devices == {device.device_id: device.device_keys()}
    assert sync_until(s.a, s.alice, changed_includes(s.bob.user_id), since_a)


def test_cross_signing_keys_reach_the_other_server(shared: SharedRoom) -> None:
    s = shared
    _upload_device_keys(s.b, s.bob)
    since_a = sync(s.a, s.alice.access_token)["next_batch"]
    remote_store = s.a.homeserver.remote_keys.store
    deadline = time.monotonic() + 10
    while s.a.run_sync(remote_store.get_position(s.bob.user_id)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    _, _, _, body = cross_signing_keys(s.bob.user_id)
    uploaded = post(s.b, s.bob.access_token, "/keys/device_signing/upload", body)
    assert uploaded.status == 200, uploaded.body

    assert sync_until(s.a, s.alice, changed_includes(s.bob.user_id), since_a)
    deadline = time.monotonic() + 10
    while True:
        cached = s.a.run_sync(remote_store.get_cached([s.bob.user_id]))[s.bob.user_id]
        if "master" in cached.cross_signing:
            break
        assert time.monotonic() < deadline, "no m.signing_key_update applied"
        time.sleep(0.05)
    assert cached.cross_signing["master"] == body["master_key"]
    assert cached.cross_signing["self_signing"] == body["self_signing_key"]
