"""Stopping a Hearth process (SIGTERM) writes what it still held in memory first."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.interop.federation_sides import HearthSide, ok
from tests.interop.hearth_process import HearthProcess

pytestmark = pytest.mark.slow


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
