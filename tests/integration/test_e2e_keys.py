"""/keys/upload, /keys/query, /keys/claim, /keys/changes and the key parts of /sync, over
real HTTP on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.e2e_helpers import V3, Device, create_room, post, serve, sync
from tests.integration.harness import RegisteredUser, RunningHomeserver


@pytest.fixture
def hs(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    yield from serve(tmp_path, db_config, reactor_thread, run_sync)


def test_upload_query_and_counts(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    device = Device(alice)
    uploaded = post(
        hs,
        alice.access_token,
        "/keys/upload",
        {
            "device_keys": device.device_keys(),
            "one_time_keys": device.one_time_keys(range(3)),
            "fallback_keys": device.fallback_key(),
        },
    )
    assert uploaded.status == 200, uploaded.body
    assert uploaded.json() == {"one_time_key_counts": {"signed_curve25519": 3}}
    # An identical retry changes nothing; the unstable fallback name is accepted too.
    again = post(
        hs,
        alice.access_token,
        "/keys/upload",
        {
            "device_keys": device.device_keys(),
            "one_time_keys": device.one_time_keys(range(3)),
            "org.matrix.msc2732.fallback_keys": device.fallback_key(),
        },
    )
    assert again.json() == {"one_time_key_counts": {"signed_curve25519": 3}}
    # Nothing uploaded: still the counts, with signed_curve25519 always present.
    assert post(hs, bob.access_token, "/keys/upload", {}).json() == {
        "one_time_key_counts": {"signed_curve25519": 0}
    }

    query = post(
        hs,
        bob.access_token,
        "/keys/query",
        {"device_keys": {alice.user_id: [], bob.user_id: [], "@nobody:hs.test": []}},
    )
    assert query.status == 200, query.body
    body = query.json()
    stored = body["device_keys"][alice.user_id][alice.device_id]
    expected = device.device_keys()
    assert {k: v for k, v in stored.items() if k != "unsigned"} == expected
    assert "device_display_name" in stored["unsigned"]
    assert body["device_keys"][bob.user_id] == {}
    assert body["device_keys"]["@nobody:hs.test"] == {}
    assert body["failures"] == {}
    # A named device that does not exist is left out; a named one that does is given.
    only = post(
        hs,
        bob.access_token,
        "/keys/query",
        {"device_keys": {alice.user_id: ["NOPE", alice.device_id]}},
    ).json()
    assert list(only["device_keys"][alice.user_id]) == [alice.device_id]
    # Users of other servers go to the federation seam: unreachable for now.
    remote = post(
        hs, bob.access_token, "/keys/query", {"device_keys": {"@carol:elsewhere.test": []}}
    ).json()
    assert remote["failures"]["elsewhere.test"]["status"] == 503
    assert "@carol:elsewhere.test" not in remote["device_keys"]

    first = sync(hs, alice.access_token)
    assert first["device_one_time_keys_count"] == {"signed_curve25519": 3}
    assert first["device_unused_fallback_key_types"] == ["signed_curve25519"]


def test_bad_uploads_are_refused_and_change_nothing(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    device = Device(alice)
    token = alice.access_token

    def upload(body: dict[str, object]) -> tuple[int, str]:
        result = post(hs, token, "/keys/upload", body)
        return result.status, result.json().get("errcode", "")

    keys = device.device_keys()
    assert upload({"device_keys": {"user_id": alice.user_id, "device_id": alice.device_id}}) == (
        400,
        "M_BAD_JSON",
    )
    assert upload({"device_keys": {**keys, "user_id": bob.user_id}}) == (400, "M_BAD_JSON")
    assert upload({"device_keys": {**keys, "device_id": "OTHER"}}) == (400, "M_BAD_JSON")
    assert upload({"device_keys": {**keys, "keys": "nope"}}) == (400, "M_BAD_JSON")
    assert upload({"device_keys": "nope"}) == (400, "M_BAD_JSON")
    tampered = {**keys, "algorithms": ["m.megolm.v1.aes-sha2"]}
    assert upload({"device_keys": tampered}) == (400, "M_INVALID_SIGNATURE")
    assert upload({"one_time_keys": {"no-colon": "key"}}) == (400, "M_BAD_JSON")
    assert upload({"one_time_keys": {"a:b:c": "key"}}) == (400, "M_BAD_JSON")
    assert upload({"one_time_keys": {"curve25519:1": 5}}) == (400, "M_BAD_JSON")
    assert upload({"one_time_keys": []}) == (400, "M_BAD_JSON")
    assert upload({"fallback_keys": {"curve25519:1": {"signatures": {}}}}) == (400, "M_BAD_JSON")
    assert hs.request("POST", f"{V3}/keys/upload", access_token=token, body=b"{").status == 400

    # Now the real keys; then a signed one-time key signed by someone else is refused.
    assert upload({"device_keys": keys}) == (200, "")
    forged = Device(alice).one_time_keys(range(1))
    assert upload({"one_time_keys": forged}) == (400, "M_INVALID_SIGNATURE")
    # Identity keys cannot be replaced (another key pair under the same device ID).
    impostor = Device(alice)
    assert upload({"device_keys": impostor.device_keys()}) == (400, "M_INVALID_PARAM")
    # A one-time key ID reused with other content is refused, and the batch with it.
    assert upload({"one_time_keys": device.one_time_keys(range(2))}) == (200, "")
    clash = {**device.one_time_keys(range(2, 4)), "signed_curve25519:K0": "different"}
    assert upload({"one_time_keys": clash}) == (400, "M_INVALID_PARAM")

    query = post(hs, bob.access_token, "/keys/query", {"device_keys": {alice.user_id: []}})
    stored = query.json()["device_keys"][alice.user_id][alice.device_id]
    assert stored["keys"] == keys["keys"]
    counts = post(hs, token, "/keys/upload", {}).json()["one_time_key_counts"]
    assert counts == {"signed_curve25519": 2}


def test_bad_queries_and_claims(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    token = alice.access_token
    bad_queries: list[dict[str, Any]] = [
        {"device_keys": {alice.user_id: {"DEVICE": True}}},
        {"device_keys": []},
        {},
        {"device_keys": {alice.user_id: []}, "timeout": "soon"},
    ]
    for body in bad_queries:
        result = post(hs, token, "/keys/query", body)
        assert (result.status, result.json()["errcode"]) == (400, "M_BAD_JSON"), body
    assert post(hs, token, "/keys/query", {"device_keys": {"nope": []}}).status == 400
    bad_claims: list[dict[str, Any]] = [
        {"one_time_keys": {alice.user_id: ["DEVICE"]}},
        {"one_time_keys": {alice.user_id: {"DEVICE": 1}}},
        {},
    ]
    for body in bad_claims:
        result = post(hs, token, "/keys/claim", body)
        assert (result.status, result.json()["errcode"]) == (400, "M_BAD_JSON"), body
    assert post(hs, token, "/keys/claim", {"one_time_keys": {"nope": {}}}).status == 400


def test_claim_hands_out_each_key_once_then_the_fallback(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    device = Device(alice)
    post(
        hs,
        alice.access_token,
        "/keys/upload",
        {"device_keys": device.device_keys(), "one_time_keys": device.one_time_keys(range(2))},
    )
    # Uploaded later, but with a lower ID: claims go in upload order.
    post(
        hs,
        alice.access_token,
        "/keys/upload",
        {"one_time_keys": device.one_time_keys(range(-1, 0))},
    )
    post(hs, alice.access_token, "/keys/upload", {"fallback_keys": device.fallback_key()})
    wanted = {
        "one_time_keys": {
            alice.user_id: {alice.device_id: "signed_curve25519", "NODEVICE": "signed_curve25519"},
            "@nobody:hs.test": {"X": "signed_curve25519"},
            "@carol:elsewhere.test": {"Y": "signed_curve25519"},
        }
    }
    claimed_ids = []
    for _ in range(3):
        result = post(hs, bob.access_token, "/keys/claim", wanted)
        assert result.status == 200, result.body
        body = result.json()
        assert set(body["one_time_keys"]) == {alice.user_id}
        assert set(body["one_time_keys"][alice.user_id]) == {alice.device_id}
        [(key_id, key)] = body["one_time_keys"][alice.user_id][alice.device_id].items()
        assert key["signatures"][alice.user_id]
        claimed_ids.append(key_id)
        assert body["failures"]["elsewhere.test"]["status"] == 503
    assert claimed_ids == ["signed_curve25519:K0", "signed_curve25519:K1", "signed_curve25519:K-1"]
    assert sync(hs, alice.access_token)["device_unused_fallback_key_types"] == ["signed_curve25519"]
    # Keys exhausted: the fallback key, again and again, now marked used.
    for _ in range(2):
        body = post(hs, bob.access_token, "/keys/claim", wanted).json()
        key = body["one_time_keys"][alice.user_id][alice.device_id]
        assert list(key) == ["signed_curve25519:F1"] and key["signed_curve25519:F1"]["fallback"]
    synced = sync(hs, alice.access_token)
    assert synced["device_unused_fallback_key_types"] == []
    assert synced["device_one_time_keys_count"] == {"signed_curve25519": 0}
    # A new fallback key is unused again.
    post(hs, alice.access_token, "/keys/upload", {"fallback_keys": device.fallback_key("F2")})
    assert sync(hs, alice.access_token)["device_unused_fallback_key_types"] == ["signed_curve25519"]


def test_device_lists_in_sync_and_keys_changes(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    carol = hs.register_user("carol")  # shares no room with alice
    room_id = create_room(hs, alice, bob)
    since = sync(hs, alice.access_token)["next_batch"]
    post(hs, bob.access_token, "/keys/upload", {"device_keys": Device(bob).device_keys()})
    post(hs, carol.access_token, "/keys/upload", {"device_keys": Device(carol).device_keys()})
    after = sync(hs, alice.access_token, since)
    assert after["device_lists"]["changed"] == [bob.user_id]
    assert after["device_lists"]["left"] == []
    changes = hs.request(
        "GET",
        f"{V3}/keys/changes?from={quote(since)}&to={quote(after['next_batch'])}",
        access_token=alice.access_token,
    )
    assert changes.status == 200, changes.body
    assert changes.json() == {"changed": [bob.user_id], "left": []}

    # Bob's new device (a login, then its keys) wakes alice's long-poll.
    since = after["next_batch"]
    login = hs.login(bob.user_id, device_id="BOBPHONE")
    phone = RegisteredUser(bob.user_id, login["access_token"], "BOBPHONE", "password")
    post(hs, phone.access_token, "/keys/upload", {"device_keys": Device(phone).device_keys()})
    woke = sync(hs, alice.access_token, since, timeout=5000)
    assert bob.user_id in woke["device_lists"]["changed"]
    both = post(hs, alice.access_token, "/keys/query", {"device_keys": {bob.user_id: []}})
    assert set(both.json()["device_keys"][bob.user_id]) == {bob.device_id, "BOBPHONE"}

    # Deleting a device drops its keys and is a change.
    since = woke["next_batch"]
    logout = hs.request("POST", f"{V3}/logout", access_token=login["access_token"], body={})
    assert logout.status == 200
    gone = sync(hs, alice.access_token, since, timeout=5000)
    assert gone["device_lists"]["changed"] == [bob.user_id]
    left_keys = post(hs, alice.access_token, "/keys/query", {"device_keys": {bob.user_id: []}})
    assert set(left_keys.json()["device_keys"][bob.user_id]) == {bob.device_id}

    # Bob leaves: alice no longer shares a room with him.
    since = gone["next_batch"]
    assert post(hs, bob.access_token, f"/rooms/{quote(room_id)}/leave", {}).status == 200
    left = sync(hs, alice.access_token, since)
    assert left["device_lists"] == {"changed": [], "left": [bob.user_id]}
    # Carol joins a room with alice: she is newly "changed" for alice.
    since = left["next_batch"]
    create_room(hs, carol, alice)
    joined = sync(hs, alice.access_token, since)
    assert joined["device_lists"]["changed"] == [carol.user_id]

    bad = hs.request("GET", f"{V3}/keys/changes?from=nope&to=s1", access_token=alice.access_token)
    assert (bad.status, bad.json()["errcode"]) == (400, "M_INVALID_PARAM")
    missing = hs.request("GET", f"{V3}/keys/changes?from=s1", access_token=alice.access_token)
    assert (missing.status, missing.json()["errcode"]) == (400, "M_MISSING_PARAM")
