"""Start Hearth in-process on free ports and talk to it over real HTTP."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig, parse_config
from homeserver.config.generate import write_signing_key
from storage.engine import DatabaseConfig


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> HttpResult:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        payload = json.dumps(body).encode() if isinstance(body, dict) else body
        connection.request(method, path, body=payload, headers=headers or {})
        response = connection.getresponse()
        return HttpResult(
            status=response.status,
            headers={k.lower(): v for k, v in response.getheaders()},
            body=response.read(),
        )
    finally:
        connection.close()


TEST_SHARED_SECRET = "hearth-test-shared-secret"


def make_config(
    tmp_path: Path,
    db_config: DatabaseConfig,
    *,
    resources: tuple[str, ...] = ("client", "federation", "keys", "metrics", "health"),
    **extra: Any,
) -> HomeserverConfig:
    key_path = tmp_path / "hs.test.signing.key"
    if not key_path.exists():
        write_signing_key(key_path)
    data = {
        "server_name": "hs.test",
        "public_baseurl": "https://matrix.hs.test/",
        "listeners": [
            {
                "port": 0,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "resources": [{"names": list(resources)}],
            }
        ],
        "database": {"name": db_config.name, "args": dict(db_config.args)},
        "signing_key_path": str(key_path),
        # register_user() registers through the shared-secret admin API; bcrypt at its
        # cheapest keeps the tests fast.
        "registration_shared_secret": TEST_SHARED_SECRET,
        "bcrypt_rounds": 4,
        **extra,
    }
    return parse_config(data, tmp_path)


@dataclass
class RegisteredUser:
    user_id: str
    access_token: str
    device_id: str
    password: str


class RunningHomeserver:
    def __init__(self, homeserver: Homeserver, run_sync: Callable[..., Any]) -> None:
        self.homeserver = homeserver
        self.run_sync = run_sync

    @property
    def port(self) -> int:
        return self.homeserver.bound_ports[0]

    def request(
        self, method: str, path: str, *, access_token: str | None = None, **kwargs: Any
    ) -> HttpResult:
        """An HTTP request; ``access_token`` is sent as ``Authorization: Bearer``."""
        if access_token is not None:
            kwargs["headers"] = {
                **(kwargs.get("headers") or {}),
                "Authorization": f"Bearer {access_token}",
            }
        return http_request(self.port, method, path, **kwargs)

    def register_user(
        self,
        localpart: str,
        password: str = "password",
        *,
        admin: bool = False,
        displayname: str | None = None,
    ) -> RegisteredUser:
        """Register a user through the shared-secret admin API; their first login."""
        nonce = self.request("GET", "/_synapse/admin/v1/register").json()["nonce"]
        mac = hmac.new(TEST_SHARED_SECRET.encode(), digestmod=hashlib.sha1)
        mac.update(f"{nonce}\0{localpart}\0{password}\0{'admin' if admin else 'notadmin'}".encode())
        body: dict[str, Any] = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        if displayname is not None:
            body["displayname"] = displayname
        result = self.request("POST", "/_synapse/admin/v1/register", body=body)
        assert result.status == 200, result.body
        data = result.json()
        return RegisteredUser(data["user_id"], data["access_token"], data["device_id"], password)

    def login(self, user_id: str, password: str = "password", **extra: Any) -> dict[str, Any]:
        """A password login; its response body (asserts it succeeded)."""
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
            **extra,
        }
        result = self.request("POST", "/_matrix/client/v3/login", body=body)
        assert result.status == 200, result.body
        data: dict[str, Any] = result.json()
        return data

    def stop(self) -> None:
        self.run_sync(self.homeserver.stop())


def start_homeserver(
    config: HomeserverConfig, reactor: Any, run_sync: Callable[..., Any]
) -> RunningHomeserver:
    def build_and_start() -> Any:
        homeserver = Homeserver(config, reactor)

        async def start() -> Homeserver:
            await homeserver.start()
            return homeserver

        return start()

    return RunningHomeserver(run_sync(build_and_start), run_sync)
