"""Client-side helpers for tests with several federating Hearth servers (see
federation_helpers.py for the servers themselves): users, rooms, messages, and signed
server-to-server requests made with a server's own federation client."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from homeserver.events.hashing import make_event
from homeserver.events.model import Event, JsonDict
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from tests.integration.federation_helpers import FederatedServer
from tests.integration.harness import TEST_SHARED_SECRET, HttpResult, RegisteredUser

WAIT_SECONDS = 30.0


def q(value: str) -> str:
    return quote(value, safe="")


def register(server: FederatedServer, localpart: str) -> RegisteredUser:
    nonce = server.https("GET", "/_synapse/admin/v1/register").json()["nonce"]
    mac = hmac.new(TEST_SHARED_SECRET.encode(), digestmod=hashlib.sha1)
    mac.update(f"{nonce}\0{localpart}\0password\0notadmin".encode())
    body = {
        "nonce": nonce,
        "username": localpart,
        "password": "password",
        "admin": False,
        "mac": mac.hexdigest(),
    }
    result = server.https("POST", "/_synapse/admin/v1/register", body)
    assert result.status == 200, result.body
    data = result.json()
    return RegisteredUser(data["user_id"], data["access_token"], data["device_id"], "password")


def call(
    server: FederatedServer,
    user: RegisteredUser,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
) -> HttpResult:
    """A client API request (``path`` under /_matrix/client/v3) as ``user``."""
    if method in ("POST", "PUT") and body is None:
        body = {}
    return server.https(
        method, "/_matrix/client/v3" + path, body, {"Authorization": f"Bearer {user.access_token}"}
    )


def ok(result: HttpResult) -> Any:
    assert result.status == 200, result.body
    return result.json()


def wait_for(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def create_room(server: FederatedServer, user: RegisteredUser, **body: Any) -> str:
    room_id: str = ok(call(server, user, "POST", "/createRoom", body))["room_id"]
    return room_id


def send_text(server: FederatedServer, user: RegisteredUser, room_id: str, text: str) -> str:
    result = call(
        server,
        user,
        "PUT",
        f"/rooms/{q(room_id)}/send/m.room.message/t{time.monotonic_ns()}",
        {"msgtype": "m.text", "body": text},
    )
    event_id: str = ok(result)["event_id"]
    return event_id


def join_over_federation(
    server: FederatedServer, user: RegisteredUser, room_id: str, via: FederatedServer
) -> None:
    """Join ``user`` of ``server`` to a room of ``via`` (make_join/send_join)."""
    ok(call(server, user, "POST", f"/join/{q(room_id)}?server_name={q(via.server_name)}"))


def federation_get(
    origin: FederatedServer,
    destination: FederatedServer,
    path: str,
    args: Mapping[str, str | Sequence[str]] | None = None,
) -> Any:
    """A signed GET from ``origin`` to ``destination``; HttpResponseError on an error."""
    client = origin.homeserver.federation_client
    return origin.run_sync(lambda: client.get_json(destination.server_name, path, args=args))


def federation_post(
    origin: FederatedServer, destination: FederatedServer, path: str, data: JsonDict
) -> Any:
    client = origin.homeserver.federation_client
    return origin.run_sync(lambda: client.post_json(destination.server_name, path, data=data))


def pdu_event(pdu: JsonDict, room_version: str) -> Event:
    """A PDU as received, with its event ID worked out for the room version."""
    return make_event(dict(pdu), KNOWN_ROOM_VERSIONS[room_version])
