"""Presence over real HTTP, its timers, and what /sync reads of it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from homeserver.config.model import PresenceConfig
from homeserver.handlers.presence import PresenceHandler
from homeserver.notifier import Notifier
from homeserver.streams import RoomStreamToken, StreamToken
from storage.engine import Database, DatabaseConfig
from storage.presence import PresenceStore
from tests.integration.harness import RunningHomeserver, start_homeserver
from tests.integration.rooms_helpers import (
    UNLIMITED,
    User,
    assert_error,
    quote,
    register,
    rooms_config,
)
from tests.integration.streams_helpers import alice, bob, moved, server, shared_room

__all__ = ["alice", "bob", "server"]  # fixtures


def status_path(user_id: str) -> str:
    return f"/presence/{quote(user_id)}/status"


def updates(server: RunningHomeserver, users: list[str], since: int | None) -> Any:
    handler = server.homeserver.presence_handler
    return server.run_sync(handler.get_presence_updates(users, since))


def position(server: RunningHomeserver) -> int:
    result: int = server.homeserver.presence_handler.current_position()
    return result


def test_put_and_get_presence(server: RunningHomeserver, alice: User, bob: User) -> None:
    room_id = shared_room(alice, bob)
    start = position(server)
    body = {"presence": "online", "status_msg": "Making cupcakes"}
    assert alice.ok("PUT", status_path(alice.user_id), body) == {}
    assert position(server) == start + 1
    assert moved(server, alice.user_id, [], "presence", start)

    mine = alice.ok("GET", status_path(alice.user_id))
    assert mine["presence"] == "online" and mine["status_msg"] == "Making cupcakes"
    assert mine["currently_active"] is True
    assert 0 <= mine["last_active_ago"] < 60_000
    # Someone sharing a room may look.
    assert bob.ok("GET", status_path(alice.user_id))["presence"] == "online"

    events = updates(server, [alice.user_id, bob.user_id], start)
    assert len(events) == 1
    assert events[0]["type"] == "m.presence" and events[0]["sender"] == alice.user_id
    assert events[0]["content"]["status_msg"] == "Making cupcakes"
    assert updates(server, [alice.user_id], position(server)) == []
    assert updates(server, [bob.user_id], start) == []  # not of interest

    # unavailable: no currently_active; a PUT without status_msg clears it.
    alice.ok("PUT", status_path(alice.user_id), {"presence": "unavailable"})
    mine = alice.ok("GET", status_path(alice.user_id))
    assert mine["presence"] == "unavailable"
    assert "status_msg" not in mine and "currently_active" not in mine
    assert room_id  # shared


def test_initial_presence_skips_offline_users(
    server: RunningHomeserver, alice: User, bob: User
) -> None:
    alice.ok("PUT", status_path(alice.user_id), {"presence": "online"})
    bob.ok("PUT", status_path(bob.user_id), {"presence": "offline", "status_msg": "away"})
    initial = updates(server, [alice.user_id, bob.user_id], None)
    assert [e["sender"] for e in initial] == [alice.user_id]
    # A user who never set anything reads as offline.
    carol = register(server, "carol")
    assert carol.ok("GET", status_path(carol.user_id)) == {"presence": "offline"}


def test_activity_makes_unavailable_online(
    server: RunningHomeserver, alice: User, bob: User
) -> None:
    room_id = shared_room(alice, bob)
    alice.ok("PUT", status_path(alice.user_id), {"presence": "unavailable"})
    before = position(server)
    # Sending, typing and receipts count as activity.
    alice.send(room_id, {"body": "back"})
    # The send's bump runs after the send has answered: wait for it.
    deadline = time.monotonic() + 10
    events = updates(server, [alice.user_id], before)
    while not events and time.monotonic() < deadline:
        time.sleep(0.02)
        events = updates(server, [alice.user_id], before)
    assert events[-1]["content"]["presence"] == "online"
    assert events[-1]["content"]["currently_active"] is True
    # An explicit offline is not undone by activity.
    alice.ok("PUT", status_path(alice.user_id), {"presence": "offline"})
    alice.ok("PUT", f"/rooms/{quote(room_id)}/typing/{quote(alice.user_id)}", {"typing": True})
    assert alice.ok("GET", status_path(alice.user_id))["presence"] == "offline"


def test_set_state_from_sync(server: RunningHomeserver, alice: User, bob: User) -> None:
    shared_room(alice, bob)
    handler = server.homeserver.presence_handler
    start = position(server)
    server.run_sync(handler.set_state(alice.user_id, "unavailable", from_sync=True))
    assert bob.ok("GET", status_path(alice.user_id))["presence"] == "unavailable"
    # "offline" from /sync means "leave my presence alone".
    server.run_sync(handler.set_state(alice.user_id, "offline", from_sync=True))
    assert bob.ok("GET", status_path(alice.user_id))["presence"] == "unavailable"
    # The /sync adapter: the user's room-mates are of interest.
    token = StreamToken(RoomStreamToken(None, 0), (("presence", start),))
    rooms = bob.joined_rooms()
    events = server.run_sync(handler.sync_presence(bob.user_id, rooms, token))
    assert [e["sender"] for e in events] == [alice.user_id]
    assert server.run_sync(handler.sync_presence(bob.user_id, [], token)) == []


def test_presence_errors(alice: User, bob: User) -> None:
    assert_error(
        alice.request("PUT", status_path(bob.user_id), {"presence": "online"}), 403, "M_FORBIDDEN"
    )
    # No shared room: not allowed to look.
    assert_error(alice.request("GET", status_path(bob.user_id)), 403, "M_FORBIDDEN")
    assert_error(alice.request("GET", status_path("not-a-user")), 400, "M_INVALID_PARAM")
    path = status_path(alice.user_id)
    assert_error(alice.request("PUT", path, {}), 400, "M_BAD_JSON")
    assert_error(alice.request("PUT", path, {"presence": "busy"}), 400, "M_INVALID_PARAM")
    assert_error(alice.request("PUT", path, {"presence": 1}), 400, "M_INVALID_PARAM")
    assert_error(
        alice.request("PUT", path, {"presence": "online", "status_msg": 5}), 400, "M_BAD_JSON"
    )
    assert_error(alice.request("PUT", path, b"nope"), 400, "M_NOT_JSON")
    assert_error(alice.request("GET", path, token=False), 401, "M_MISSING_TOKEN")


def test_presence_disabled(
    tmp_path: Path, db_config: DatabaseConfig, reactor_thread: Any, run_sync: Any
) -> None:
    config = rooms_config(
        tmp_path,
        db_config,
        presence={"enabled": False},
        rc_presence={"per_user": UNLIMITED},
    )
    running = start_homeserver(config, reactor_thread, run_sync)
    try:
        alice = register(running, "alice")
        assert alice.ok("PUT", status_path(alice.user_id), {"presence": "online"}) == {}
        assert alice.ok("GET", status_path(alice.user_id)) == {"presence": "offline"}
        handler = running.homeserver.presence_handler
        assert run_sync(handler.get_presence_updates([alice.user_id], None)) == []
        assert handler.current_position() == 0
        # Still validated.
        assert_error(
            alice.request("PUT", status_path(alice.user_id), {"presence": "x"}),
            400,
            "M_INVALID_PARAM",
        )
    finally:
        running.stop()


def test_presence_rate_limit(
    tmp_path: Path, db_config: DatabaseConfig, reactor_thread: Any, run_sync: Any
) -> None:
    config = rooms_config(
        tmp_path, db_config, rc_presence={"per_user": {"per_second": 0.001, "burst_count": 1}}
    )
    running = start_homeserver(config, reactor_thread, run_sync)
    try:
        alice = register(running, "alice")
        alice.ok("PUT", status_path(alice.user_id), {"presence": "online"})
        assert_error(
            alice.request("PUT", status_path(alice.user_id), {"presence": "online"}),
            429,
            "M_LIMIT_EXCEEDED",
        )
    finally:
        running.stop()


# --- the timers, on a clock the test moves ----------------------------------------------


class _Timers:
    def __init__(self, database: Database, run_sync: Any) -> None:
        self.clock = Clock()
        self.run_sync = run_sync
        self.notifier = Notifier(None)
        self.handler = PresenceHandler(
            store=PresenceStore(database),
            notifier=self.notifier,
            clock=self.clock,
            now_ms=lambda: int(self.clock.seconds() * 1000),
            settings=PresenceConfig(),
            get_rooms_for_user=_no_rooms,
        )
        self.clock.advance(1_000_000)
        run_sync(self.handler.load_positions())

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.run_sync(self.handler.check_timeouts())

    def state(self, user_id: str) -> Any:
        rows = self.run_sync(self.handler.store.get([user_id]))
        return rows[user_id]


async def _no_rooms(user_id: str) -> list[str]:
    return []


def test_idle_and_offline_timers(database: Database, run_sync: Any) -> None:
    timers = _Timers(database, run_sync)
    handler = timers.handler
    user = "@alice:hs.test"
    try:
        with handler.syncing(user):
            run_sync(handler.set_state(user, "online", from_sync=True))
            assert timers.state(user).currently_active
            # After a minute without activity: still online, no longer currently active.
            timers.advance(61)
            row = timers.state(user)
            assert (row.state, row.currently_active) == ("online", False)
            # Five minutes idle: unavailable (still syncing, so not offline).
            timers.advance(240)
            assert timers.state(user).state == "unavailable"
            # Activity: online again.
            run_sync(handler.bump_active(user))
            assert timers.state(user).state == "online"
        # No sync running and none for 30 seconds: offline.
        before = handler.current_position()
        timers.advance(31)
        assert timers.state(user).state == "offline"
        assert handler.current_position() > before
        assert timers.notifier._last[f"user:{user}"]["presence"] == handler.current_position()
    finally:
        handler.stop()


def test_watched_users_are_reloaded(database: Database, run_sync: Any) -> None:
    first = _Timers(database, run_sync)
    user = "@bob:hs.test"
    run_sync(first.handler.set_state(user, "online"))
    first.handler.stop()
    # A restart watches whoever was not offline, and times them out if nobody syncs.
    second = _Timers(database, run_sync)
    try:
        assert second.handler.current_position() == first.handler.current_position()
        second.advance(31)
        assert second.state(user).state == "offline"
    finally:
        second.handler.stop()
