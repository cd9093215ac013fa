"""Helpers for the end-to-end encryption tests: a client device's real ed25519 keys and
signatures (signedjson), so the server's signature checks see what clients send."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from tests.integration.harness import (
    RegisteredUser,
    RunningHomeserver,
    make_config,
    start_homeserver,
)

V3 = "/_matrix/client/v3"


def serve(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    """The body of each test module's ``hs`` fixture: a Hearth with registration open."""
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


class Ed25519Key:
    """A signing key whose key ID is ``ed25519:<name>`` (a device ID or, for cross-signing
    keys, the public key itself)."""

    def __init__(self, name: str | None = None) -> None:
        self.signing_key = generate_signing_key(name or "tmp")
        self.public = encode_verify_key_base64(get_verify_key(self.signing_key))
        if name is None:
            self.signing_key.version = self.public
        self.key_id = f"ed25519:{self.signing_key.version}"

    def sign(self, obj: dict[str, Any], user_id: str) -> dict[str, Any]:
        signed: dict[str, Any] = sign_json(dict(obj), user_id, self.signing_key)
        return signed


class Device:
    def __init__(self, user: RegisteredUser) -> None:
        self.user_id = user.user_id
        self.device_id = user.device_id
        self.access_token = user.access_token
        self.key = Ed25519Key(self.device_id)
        self.curve = f"curve{self.device_id}".ljust(43, "A")

    def device_keys(self) -> dict[str, Any]:
        return self.key.sign(
            {
                "user_id": self.user_id,
                "device_id": self.device_id,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": {
                    f"curve25519:{self.device_id}": self.curve,
                    f"ed25519:{self.device_id}": self.key.public,
                },
            },
            self.user_id,
        )

    def one_time_keys(self, ids: range) -> dict[str, Any]:
        return {
            f"signed_curve25519:K{i}": self.key.sign({"key": f"otk{i}"}, self.user_id) for i in ids
        }

    def fallback_key(self, name: str = "F1") -> dict[str, Any]:
        return {
            f"signed_curve25519:{name}": self.key.sign(
                {"key": f"fallback-{name}", "fallback": True}, self.user_id
            )
        }


def cross_signing_keys(user_id: str) -> tuple[Ed25519Key, Ed25519Key, Ed25519Key, dict[str, Any]]:
    """(master, self-signing, user-signing, the /keys/device_signing/upload body)."""
    master, self_signing, user_signing = Ed25519Key(), Ed25519Key(), Ed25519Key()

    def key(k: Ed25519Key, usage: str) -> dict[str, Any]:
        return {"user_id": user_id, "usage": [usage], "keys": {k.key_id: k.public}}

    body = {
        "master_key": key(master, "master"),
        "self_signing_key": master.sign(key(self_signing, "self_signing"), user_id),
        "user_signing_key": master.sign(key(user_signing, "user_signing"), user_id),
    }
    return master, self_signing, user_signing, body


def post(hs: RunningHomeserver, token: str, path: str, body: dict[str, Any]) -> Any:
    return hs.request("POST", f"{V3}{path}", access_token=token, body=body)


def sync(hs: RunningHomeserver, token: str, since: str | None = None, timeout: int = 0) -> Any:
    path = f"{V3}/sync?timeout={timeout}"
    if since is not None:
        path += f"&since={quote(since)}"
    result = hs.request("GET", path, access_token=token)
    assert result.status == 200, result.body
    return result.json()


def create_room(hs: RunningHomeserver, creator: RegisteredUser, *members: RegisteredUser) -> str:
    result = post(hs, creator.access_token, "/createRoom", {"preset": "private_chat"})
    assert result.status == 200, result.body
    room_id: str = result.json()["room_id"]
    for member in members:
        invited = post(
            hs, creator.access_token, f"/rooms/{quote(room_id)}/invite", {"user_id": member.user_id}
        )
        assert invited.status == 200, invited.body
        joined = post(hs, member.access_token, f"/join/{quote(room_id)}", {})
        assert joined.status == 200, joined.body
    return room_id
