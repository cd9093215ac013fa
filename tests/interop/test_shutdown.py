"""Stopping a Hearth process (SIGTERM) writes what it still held in memory first."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.interop.federation_sides import HearthSide, ok
from tests.interop.hearth_process import HearthProcess

pytestmark = pytest.mark.slow

PUBLIC = {"preset": "public_chat"}


def test_last_seen_times_pending_at_shutdown_are_written(
    hearth_processes: Callable[..., HearthProcess],
) -> None:
    process = hearth_processes("hearth")
    side = HearthSide(process)
    account = side.register("dana")
    devices = ok(side.client("GET", "/_matrix/client/v3/devices", token=account.token))
    # Last seen times are written every few seconds; the first request's is still pending.
    assert devices["devices"][0].get("last_seen_ts") is not None
    process.stop()
    assert "could not store devices' last seen times" not in process.log_tail(1000)

    process.start()
    devices = ok(side.client("GET", "/_matrix/client/v3/devices", token=account.token))
    (device,) = devices["devices"]
    assert device["device_id"] == account.device_id
    assert isinstance(device.get("last_seen_ts"), int)


def test_sync_token_from_before_a_restart(
    hearth_processes: Callable[..., HearthProcess],
) -> None:
    """A token handed out before a restart still brings what came after it: rooms that
    changed since are found in the database (the process only knows its own writes)."""
    process = hearth_processes("hearth")
    side = HearthSide(process)
    alice, bob = side.register("alice"), side.register("bob")
    rooms = [
        ok(side.client("POST", "/_matrix/client/v3/createRoom", PUBLIC, alice.token))["room_id"]
        for _ in range(3)
    ]
    for room_id in rooms:
        ok(side.client("POST", f"/_matrix/client/v3/join/{room_id}", {}, bob.token))
    since = ok(side.client("GET", "/_matrix/client/v3/sync", token=bob.token))["next_batch"]

    def send(room_id: str, body: str) -> None:
        path = f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{body}"
        ok(side.client("PUT", path, {"msgtype": "m.text", "body": body}, alice.token))

    quiet, before, after = rooms
    send(before, "before-restart")
    process.stop()
    process.start()
    send(after, "after-restart")

    synced = ok(side.client("GET", f"/_matrix/client/v3/sync?since={since}", token=bob.token))
    joined = synced["rooms"]["join"]
    assert quiet not in joined
    for room_id, body in ((before, "before-restart"), (after, "after-restart")):
        timeline = joined[room_id]["timeline"]["events"]
        assert [e["content"]["body"] for e in timeline if e["type"] == "m.room.message"] == [
            body
        ]
