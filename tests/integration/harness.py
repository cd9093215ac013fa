"""Start Hearth in-process on free ports and talk to it over real HTTP."""

from __future__ import annotations

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
        **extra,
    }
    return parse_config(data, tmp_path)


class RunningHomeserver:
    def __init__(self, homeserver: Homeserver, run_sync: Callable[..., Any]) -> None:
        self.homeserver = homeserver
        self.run_sync = run_sync

    @property
    def port(self) -> int:
        return self.homeserver.bound_ports[0]

    def request(self, method: str, path: str, **kwargs: Any) -> HttpResult:
        return http_request(self.port, method, path, **kwargs)

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
