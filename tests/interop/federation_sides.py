"""Homeservers seen only through their Client-Server API, so one scenario runs against any
pair of them: Hearth in-process (``tests.integration.federation_helpers``) or a real Synapse
(``tests.interop.synapse_server``).

A *side* is a server under test; an ``Account`` is a user on one side with an access token.
Scenarios assert what each side shows its own users through /sync, /messages and /state.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from tests.integration.harness import TEST_SHARED_SECRET, HttpResult
from tests.interop.synapse_server import SynapseServer

WAIT_SECONDS = 30.0

_UNLIMITED = {"per_second": 10000, "burst_count": 100000}
# Rate limiting is not what these tests look at: as on the Synapse side, out of the way.
HEARTH_SETTINGS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_login": {"address": _UNLIMITED, "account": _UNLIMITED, "failed_attempts": _UNLIMITED},
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_invites": {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED},
    "rc_room_creation": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_federation": {
        "window_size": 1000,
        "sleep_limit": 10000,
        "sleep_delay": 0,
        "reject_limit": 10000,
        "concurrent": 100,
    },
}

_localparts = itertools.count(1)
# Synapse answers a repeated /sync from its response cache for a while (the cache key holds
# the timeout but not the time): a timeout of its own makes every request a fresh one. An
# initial sync never waits, on either server, so the value costs nothing.
_sync_timeouts = itertools.count(1)


def unique(localpart: str) -> str:
    """Localparts unique across the session: one Synapse serves every test."""
    return f"{localpart}{next(_localparts)}_{time.monotonic_ns() % 1_000_000}"


class Reply(Protocol):
    status: int
    body: bytes

    def json(self) -> Any: ...


class Side(Protocol):
    label: str

    @property
    def server_name(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    def client(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> Reply: ...

    def register(self, localpart: str) -> Account: ...


class HearthServer(Protocol):
    """An in-process FederatedServer or a HearthProcess."""

    @property
    def server_name(self) -> str: ...

    @property
    def port(self) -> int: ...

    def https(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResult: ...


class HearthSide:
    def __init__(self, server: HearthServer, label: str = "hearth") -> None:
        self.server = server
        self.label = label

    @property
    def server_name(self) -> str:
        return self.server.server_name

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.server.port}"

    def client(self, method: str, path: str, body: Any = None, token: str | None = None) -> Reply:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        payload = json.dumps(body).encode() if body is not None else None
        return self.server.https(method, path, payload, headers)

    def register(self, localpart: str) -> Account:
        localpart = unique(localpart)
        nonce = self.client("GET", "/_synapse/admin/v1/register").json()["nonce"]
        mac = hmac.new(TEST_SHARED_SECRET.encode(), digestmod=hashlib.sha1)
        mac.update(f"{nonce}\0{localpart}\0password\0notadmin".encode())
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": "password",
            "admin": False,
            "mac": mac.hexdigest(),
        }
        result = self.client("POST", "/_synapse/admin/v1/register", body)
        assert result.status == 200, result.body
        data = result.json()
        return Account(self, data["user_id"], data["access_token"], data["device_id"])


class SynapseSide:
    def __init__(self, server: SynapseServer, label: str = "synapse") -> None:
        self.server = server
        self.label = label

    @property
    def server_name(self) -> str:
        return self.server.server_name

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.client_port}"

    def client(self, method: str, path: str, body: Any = None, token: str | None = None) -> Reply:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.server.request(method, path, body, headers)

    def register(self, localpart: str) -> Account:
        data = self.server.register_user(unique(localpart))
        return Account(self, data["user_id"], data["access_token"], data["device_id"])


def q(value: str) -> str:
    return quote(value, safe="")


def ok(result: Reply) -> Any:
    assert result.status == 200, (result.status, result.body)
    return result.json()


def wait_for(check: Callable[[], Any], what: str, seconds: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Account:
    side: Side
    user_id: str
    token: str
    device_id: str

    def __str__(self) -> str:
        return f"{self.user_id} on {self.side.label}"

    def call(self, method: str, path: str, body: Any = None) -> Reply:
        if method in ("POST", "PUT") and body is None:
            body = {}
        return self.side.client(method, "/_matrix/client/v3" + path, body, self.token)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        return ok(self.call(method, path, body))

    # --- rooms ---------------------------------------------------------------------------

    def create_room(self, **body: Any) -> str:
        room_id: str = self.ok("POST", "/createRoom", body)["room_id"]
        return room_id

    def join(self, room_id_or_alias: str, via: Side | None = None) -> str:
        path = f"/join/{q(room_id_or_alias)}"
        if via is not None:
            path += f"?server_name={q(via.server_name)}"
        room_id: str = self.ok("POST", path)["room_id"]
        return room_id

    def invite(self, room_id: str, user: Account) -> None:
        self.ok("POST", f"/rooms/{q(room_id)}/invite", {"user_id": user.user_id})

    def leave(self, room_id: str) -> None:
        self.ok("POST", f"/rooms/{q(room_id)}/leave")

    def send_text(self, room_id: str, text: str) -> str:
        txn = f"t{time.monotonic_ns()}"
        path = f"/rooms/{q(room_id)}/send/m.room.message/{txn}"
        event_id: str = self.ok("PUT", path, {"msgtype": "m.text", "body": text})["event_id"]
        return event_id

    def put_state(
        self, room_id: str, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> str:
        path = f"/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}"
        event_id: str = self.ok("PUT", path, content)["event_id"]
        return event_id

    def state_content(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None:
        """The content of a current state event, or None when the server has none (404)
        or will not show it (403)."""
        result = self.call("GET", f"/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}")
        if result.status in (403, 404):
            return None
        content: dict[str, Any] = ok(result)
        return content

    def membership_of(self, room_id: str, user: Account) -> str | None:
        content = self.state_content(room_id, "m.room.member", user.user_id)
        return None if content is None else content.get("membership")

    def full_state(self, room_id: str) -> list[dict[str, Any]]:
        state: list[dict[str, Any]] = self.ok("GET", f"/rooms/{q(room_id)}/state")
        return state

    def messages(self, room_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The room's timeline newest first, paginating back from now."""
        chunk: list[dict[str, Any]] = self.ok(
            "GET", f"/rooms/{q(room_id)}/messages?dir=b&limit={limit}"
        )["chunk"]
        return chunk

    def texts(self, room_id: str, limit: int = 100) -> list[str]:
        """Message bodies, oldest first."""
        return [
            e["content"]["body"]
            for e in reversed(self.messages(room_id, limit))
            if e["type"] == "m.room.message" and "body" in e.get("content", {})
        ]

    def sync(self, since: str | None = None, filter_: str | None = None) -> Any:
        path = f"/sync?timeout={next(_sync_timeouts) if since is None else 0}"
        if since:
            path += f"&since={q(since)}"
        if filter_:
            path += f"&filter={q(filter_)}"
        synced = self.ok("GET", path)
        # Synapse leaves out empty sections.
        synced.setdefault("rooms", {})
        return synced

    def sync_section(self, room_id: str) -> str | None:
        """Which /sync rooms section lists the room (join, invite, leave, knock)."""
        rooms = self.sync(filter_='{"room":{"include_leave":true}}')["rooms"]
        for section in ("join", "invite", "knock", "leave"):
            if room_id in rooms.get(section, {}):
                return section
        return None

    def synced_timeline(self, room_id: str) -> list[dict[str, Any]]:
        room = self.sync()["rooms"].get("join", {}).get(room_id, {})
        events: list[dict[str, Any]] = room.get("timeline", {}).get("events", [])
        return events


def state_map(state: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """/state as {(type, state_key): event_id}."""
    return {(e["type"], e["state_key"]): e["event_id"] for e in state}


def sees_member(viewer: Account, room_id: str, user: Account, membership: str) -> bool:
    return viewer.membership_of(room_id, user) == membership


def wait_membership(viewer: Account, room_id: str, user: Account, membership: str) -> None:
    wait_for(
        lambda: sees_member(viewer, room_id, user, membership),
        f"{viewer.side.label} to show {user.user_id} as {membership} in {room_id}",
    )


def wait_text(viewer: Account, room_id: str, text: str) -> None:
    wait_for(lambda: text in viewer.texts(room_id), f"{text!r} in /messages for {viewer}")
