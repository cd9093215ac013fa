"""Helpers for the rooms tests: a running server with registered users talking real HTTP."""

from __future__ import annotations

import itertools
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.engine import DatabaseConfig
from tests.integration.harness import HttpResult, RunningHomeserver, make_config, start_homeserver

CLIENT = "/_matrix/client/v3"
SERVER_NAME = "hs.test"
# High enough that only the rate limit tests meet a limit.
UNLIMITED = {"per_second": 1000, "burst_count": 1000}
_txn_counter = itertools.count(1)


def quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class User:
    def __init__(self, server: RunningHomeserver, user_id: str, access_token: str) -> None:
        self.server = server
        self.user_id = user_id
        self.access_token = access_token

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | bytes | None = None,
        *,
        token: bool = True,
    ) -> HttpResult:
        headers = {"Authorization": f"Bearer {self.access_token}"} if token else {}
        if isinstance(body, dict):
            headers["Content-Type"] = "application/json"
        return self.server.request(method, CLIENT + path, body=body, headers=headers)

    def ok(self, method: str, path: str, body: dict[str, Any] | bytes | None = None) -> Any:
        result = self.request(method, path, body)
        assert result.status == 200, (method, path, result.status, result.body)
        return result.json()

    def create_room(self, **body: Any) -> str:
        room_id: str = self.ok("POST", "/createRoom", body)["room_id"]
        return room_id

    def send(
        self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message"
    ) -> str:
        txn = f"txn{next(_txn_counter)}"
        path = f"/rooms/{quote(room_id)}/send/{quote(event_type)}/{txn}"
        event_id: str = self.ok("PUT", path, content)["event_id"]
        return event_id

    def join(self, room: str) -> HttpResult:
        return self.request("POST", f"/join/{quote(room)}", {})

    def state(self, room_id: str, event_type: str, state_key: str = "") -> HttpResult:
        return self.request("GET", f"/rooms/{quote(room_id)}/state/{event_type}/{quote(state_key)}")

    def put_state(
        self, room_id: str, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> HttpResult:
        path = f"/rooms/{quote(room_id)}/state/{event_type}/{quote(state_key)}"
        return self.request("PUT", path, content)

    def membership(self, room_id: str, action: str, body: dict[str, Any]) -> HttpResult:
        return self.request("POST", f"/rooms/{quote(room_id)}/{action}", body)

    def joined_rooms(self) -> list[str]:
        rooms: list[str] = self.ok("GET", "/joined_rooms")["joined_rooms"]
        return rooms


PASSWORD = "correct horse battery"


def register(server: RunningHomeserver, localpart: str) -> User:
    registered = server.register_user(localpart, PASSWORD)
    return User(server, registered.user_id, registered.access_token)


def assert_error(result: HttpResult, status: int, errcode: str) -> dict[str, Any]:
    assert result.status == status, (result.status, result.body)
    body: dict[str, Any] = json.loads(result.body)
    assert body["errcode"] == errcode, body
    assert isinstance(body.get("error"), str)
    return body


def rooms_config(tmp_path: Path, db_config: DatabaseConfig, **extra: Any) -> Any:
    settings: dict[str, Any] = {
        "rc_message": UNLIMITED,
        "rc_registration": UNLIMITED,
        "rc_joins": {"local": UNLIMITED, "remote": UNLIMITED},
        "rc_room_creation": UNLIMITED,
        "rc_login": {"address": UNLIMITED, "account": UNLIMITED, "failed_attempts": UNLIMITED},
        "default_room_version": "10",
    }
    settings.update(extra)
    return make_config(tmp_path, db_config, **settings)


@pytest.fixture
def server(
    tmp_path: Path, db_config: DatabaseConfig, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    running = start_homeserver(rooms_config(tmp_path, db_config), reactor_thread, run_sync)
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


@pytest.fixture
def carol(server: RunningHomeserver) -> User:
    return register(server, "carol")
