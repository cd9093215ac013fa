"""/keys/device_signing/upload and /keys/signatures/upload, over real HTTP on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.e2e_helpers import (
    Device,
    create_room,
    cross_signing_keys,
    post,
    serve,
    sync,
)
from tests.integration.harness import RunningHomeserver


@pytest.fixture
def hs(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    yield from serve(tmp_path, db_config, reactor_thread, run_sync)


def _password(user_id: str, session: str) -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": "password",
        "session": session,
    }


def test_upload_needs_uia_only_to_replace(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    master, self_signing, _, body = cross_signing_keys(alice.user_id)
    first = post(hs, alice.access_token, "/keys/device_signing/upload", body)
    assert first.status == 200, first.body
    # The same keys again: idempotent, no UIA.
    assert post(hs, alice.access_token, "/keys/device_signing/upload", body).status == 200
    # New keys: UIA first, and nothing changes until it is done.
    _, _, _, replacement = cross_signing_keys(alice.user_id)
    challenge = post(hs, alice.access_token, "/keys/device_signing/upload", replacement)
    assert challenge.status == 401, challenge.body
    assert {"stages": ["m.login.password"]} in challenge.json()["flows"]
    query: dict[str, Any] = {"device_keys": {alice.user_id: []}}
    shown = post(hs, bob.access_token, "/keys/query", query).json()
    assert shown["master_keys"][alice.user_id]["keys"] == {master.key_id: master.public}
    assert shown["self_signing_keys"][alice.user_id]["keys"] == {
        self_signing.key_id: self_signing.public
    }
    assert alice.user_id not in shown["user_signing_keys"]  # only alice sees hers
    mine = post(hs, alice.access_token, "/keys/query", query).json()
    assert alice.user_id in mine["user_signing_keys"]
    session = challenge.json()["session"]
    done = post(
        hs,
        alice.access_token,
        "/keys/device_signing/upload",
        {**replacement, "auth": _password(alice.user_id, session)},
    )
    assert done.status == 200, done.body
    shown = post(hs, bob.access_token, "/keys/query", query).json()
    assert shown["master_keys"][alice.user_id] == replacement["master_key"]


def test_upload_bad_keys(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    _, _, _, body = cross_signing_keys(alice.user_id)
    _, _, _, other = cross_signing_keys(alice.user_id)

    def upload(b: dict[str, Any]) -> tuple[int, str]:
        result = post(hs, alice.access_token, "/keys/device_signing/upload", b)
        return result.status, result.json().get("errcode", "")

    # A self-signing key signed by some other master key.
    assert upload({**body, "self_signing_key": other["self_signing_key"]}) == (
        400,
        "M_INVALID_SIGNATURE",
    )
    assert upload({"self_signing_key": body["self_signing_key"]}) == (400, "M_MISSING_PARAM")
    assert upload({"master_key": {**body["master_key"], "user_id": "@bob:hs.test"}}) == (
        400,
        "M_INVALID_PARAM",
    )
    assert upload({"master_key": {**body["master_key"], "usage": ["self_signing"]}}) == (
        400,
        "M_INVALID_PARAM",
    )
    two_keys = {**body["master_key"], "keys": {"ed25519:a": "a", "ed25519:b": "b"}}
    assert upload({"master_key": two_keys}) == (400, "M_INVALID_PARAM")
    assert upload({"master_key": "key"}) == (400, "M_BAD_JSON")
    as_device = {**body["master_key"], "keys": {f"ed25519:{alice.device_id}": alice.device_id}}
    assert upload({"master_key": as_device}) == (403, "M_FORBIDDEN")
    # Nothing was stored by any of those: the first real upload still needs no UIA.
    assert upload(body) == (200, "")


def test_signatures_upload(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    device = Device(alice)
    post(hs, alice.access_token, "/keys/upload", {"device_keys": device.device_keys()})
    master, self_signing, user_signing, body = cross_signing_keys(alice.user_id)
    assert post(hs, alice.access_token, "/keys/device_signing/upload", body).status == 200
    bob_master, _, _, bob_body = cross_signing_keys(bob.user_id)
    assert post(hs, bob.access_token, "/keys/device_signing/upload", bob_body).status == 200
    create_room(hs, alice, bob)
    since = sync(hs, bob.access_token)["next_batch"]

    signed_device = self_signing.sign(device.device_keys(), alice.user_id)
    signed_master = device.key.sign(body["master_key"], alice.user_id)
    signed_bob = user_signing.sign(bob_body["master_key"], alice.user_id)
    forged = Device(alice).key.sign(body["master_key"], alice.user_id)
    result = post(
        hs,
        alice.access_token,
        "/keys/signatures/upload",
        {
            alice.user_id: {
                alice.device_id: signed_device,
                master.public: signed_master,
                "UNKNOWN": signed_device,
            },
            bob.user_id: {bob_master.public: signed_bob},
        },
    )
    assert result.status == 200, result.body
    failures = result.json()["failures"]
    assert list(failures) == [alice.user_id] and list(failures[alice.user_id]) == ["UNKNOWN"]
    assert failures[alice.user_id]["UNKNOWN"]["errcode"] == "M_NOT_FOUND"
    query: dict[str, Any] = {"device_keys": {alice.user_id: [], bob.user_id: []}}
    seen_by_bob = post(hs, bob.access_token, "/keys/query", query).json()
    device_sigs = seen_by_bob["device_keys"][alice.user_id][alice.device_id]["signatures"]
    assert set(device_sigs[alice.user_id]) == {device.key.key_id, self_signing.key_id}
    master_sigs = seen_by_bob["master_keys"][alice.user_id]["signatures"][alice.user_id]
    assert device.key.key_id in master_sigs
    # Alice's signature on bob's master key is for alice's eyes only.
    assert alice.user_id not in seen_by_bob["master_keys"][bob.user_id].get("signatures", {})
    seen_by_alice = post(hs, alice.access_token, "/keys/query", query).json()
    bob_sigs = seen_by_alice["master_keys"][bob.user_id]["signatures"]
    assert list(bob_sigs[alice.user_id]) == [user_signing.key_id]
    # A signature is a device list change of the signed user.
    assert alice.user_id in sync(hs, bob.access_token, since)["device_lists"]["changed"]

    # Bad ones: per key failures, the good ones of the same request still stored.
    wrong = {**signed_master, "signatures": {alice.user_id: {device.key.key_id: "AAAA"}}}
    altered = self_signing.sign({**device.device_keys(), "algorithms": []}, alice.user_id)
    result = post(
        hs,
        alice.access_token,
        "/keys/signatures/upload",
        {
            alice.user_id: {master.public: wrong, alice.device_id: altered},
            bob.user_id: {"nokey": signed_bob},
            "@carol:elsewhere.test": {"key": {}},
        },
    )
    assert result.status == 200
    failures = result.json()["failures"]
    assert failures[alice.user_id][master.public]["errcode"] == "M_INVALID_SIGNATURE"
    assert failures[alice.user_id][alice.device_id]["errcode"] == "M_INVALID_PARAM"
    assert failures[bob.user_id]["nokey"]["errcode"] == "M_NOT_FOUND"
    assert "key" in failures["@carol:elsewhere.test"]
    forged_result = post(
        hs, alice.access_token, "/keys/signatures/upload", {alice.user_id: {master.public: forged}}
    )
    assert forged_result.json()["failures"][alice.user_id][master.public]["errcode"] == (
        "M_INVALID_SIGNATURE"
    )
    bad = post(hs, alice.access_token, "/keys/signatures/upload", {alice.user_id: []})
    assert (bad.status, bad.json()["errcode"]) == (400, "M_BAD_JSON")
