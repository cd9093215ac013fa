"""Helpers for the typing, receipts, account data and presence tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from homeserver.streams import StreamToken
from storage.engine import DatabaseConfig
from tests.integration.harness import RunningHomeserver, start_homeserver
from tests.integration.rooms_helpers import UNLIMITED, User, register, rooms_config


@pytest.fixture
def server(
    tmp_path: Path, db_config: DatabaseConfig, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    config = rooms_config(tmp_path, db_config, rc_presence={"per_user": UNLIMITED})
    running = start_homeserver(config, reactor_thread, run_sync)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def alice(server: RunningHomeserver) -> User:
    return register(server, "alice")


@pytest.fixture
def bob(server: RunningHomeserver) -> User:
    return register(server, "bob")


def shared_room(alice: User, bob: User) -> str:
    """A public room alice created and bob joined."""
    room_id = alice.create_room(preset="public_chat")
    assert bob.join(room_id).status == 200
    return room_id


def moved(
    server: RunningHomeserver, user_id: str, rooms: list[str], stream: str, since: int
) -> bool:
    """Whether the notifier has seen ``stream`` move past ``since`` for this user or these
    rooms (every other stream is taken as already read)."""
    others = {name: 2**62 for name in ("room", *StreamToken.EXTRA_STREAMS)}
    notifier = server.homeserver.notifier
    result: bool = server.run_sync(
        notifier.wait_for_change(user_id, rooms, {**others, stream: since}, 0)
    )
    return result
