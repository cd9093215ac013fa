"""Several Hearth servers in one process, federating over real TLS sockets on loopback.

Each server is named ``127.0.0.1:<port>`` (an IP literal with a port: no discovery), serves
federation, keys and client on one TLS listener with a self-signed certificate, and has its
own database. Certificate verification is off and 127.0.0.1 is allowed by
``ip_range_whitelist`` for these servers only.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from federation.transport.auth import add_federation_route
from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig, ListenerConfig
from homeserver.config.generate import write_self_signed_certificate
from rest.request import HttpRequest
from rest.router import Router
from storage.engine import DatabaseConfig
from tests.integration.harness import HttpResult, RunningHomeserver, make_config

ECHO_PATH = "/_matrix/federation/v1/hearth_test_echo/{thing}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EchoHomeserver(Homeserver):
    """A Hearth with one extra federation route behind the real X-Matrix authenticator and
    rc_federation limiter: it answers with what it authenticated."""

    def build_router(self, listener: ListenerConfig) -> Router:
        router = super().build_router(listener)
        if "federation" in listener.resources:

            async def echo(request: HttpRequest) -> dict[str, Any]:
                content = request.json() if request.method in ("PUT", "POST") else None
                return {
                    "origin": request.requester,
                    "thing": request.path_params["thing"],
                    "uri": request.uri,
                    "host": request.header("Host"),
                    "content": content,
                }

            add_federation_route(
                router, self.federation_ratelimiter, ["GET", "PUT", "POST"], ECHO_PATH, echo
            )
        return router


@pytest.fixture
def db_configs(
    db_config: DatabaseConfig, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], DatabaseConfig]]:
    """A factory of further empty databases on the same engine as ``db_config``."""
    created: list[str] = []
    counter = [0]

    def make() -> DatabaseConfig:
        counter[0] += 1
        if db_config.name == "sqlite3":
            return DatabaseConfig("sqlite3", {"database": str(tmp_path / f"extra{counter[0]}.db")})
        server = request.getfixturevalue("postgres_server")
        name = server.create()
        created.append(name)
        config: DatabaseConfig = server.config(name)
        return config

    yield make
    if created:
        server = request.getfixturevalue("postgres_server")
        for name in created:
            server.drop(name)


def federation_config(
    directory: Path, db_config: DatabaseConfig, port: int, host: str = "127.0.0.1", **extra: Any
) -> HomeserverConfig:
    """``host``: another loopback address (127.0.0.2...) names a server whose host differs
    from the others' (server ACLs ignore ports); it listens there and on 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    server_name = f"{host}:{port}"
    cert, key = directory / "tls.crt", directory / "tls.key"
    write_self_signed_certificate(server_name, cert, key)
    settings: dict[str, Any] = {
        "server_name": server_name,
        "listeners": [
            {
                "port": port,
                "bind_addresses": list(dict.fromkeys(["127.0.0.1", host])),
                "type": "http",
                "tls": True,
                "resources": [{"names": ["client", "federation", "keys"]}],
            }
        ],
        "tls_certificate_path": str(cert),
        "tls_private_key_path": str(key),
        "federation_verify_certificates": False,
        "ip_range_whitelist": ["127.0.0.1/32"],
        "trusted_key_servers": [],
    }
    settings.update(extra)
    return make_config(directory, db_config, **settings)


class FederatedServer(RunningHomeserver):
    @property
    def server_name(self) -> str:
        return self.homeserver.config.server_name

    def https(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResult:
        """A request over TLS from a plain client (no X-Matrix unless given in headers)."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, timeout=30, context=context
        )
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

    def request(
        self, method: str, path: str, *, access_token: str | None = None, **kwargs: Any
    ) -> HttpResult:
        """A client request (over TLS: these servers listen on nothing else), so
        ``register_user`` and ``login`` work as on any test server."""
        headers = dict(kwargs.pop("headers", None) or {})
        if access_token is not None:
            headers["Authorization"] = f"Bearer {access_token}"
        return self.https(method, path, body=kwargs.pop("body", None), headers=headers)


def start_federated(
    config: HomeserverConfig, reactor: Any, run_sync: Callable[..., Any]
) -> FederatedServer:
    def build_and_start() -> Any:
        homeserver = EchoHomeserver(config, reactor)

        async def start() -> Homeserver:
            await homeserver.start()
            return homeserver

        return start()

    return FederatedServer(run_sync(build_and_start), run_sync)


class Federation:
    """Starts servers on demand and stops them all at the end of the test."""

    def __init__(
        self,
        tmp_path: Path,
        db_configs: Callable[[], DatabaseConfig],
        reactor: Any,
        run_sync: Callable[..., Any],
    ) -> None:
        self._tmp_path = tmp_path
        self._db_configs = db_configs
        self._reactor = reactor
        self._run_sync = run_sync
        self.servers: list[FederatedServer] = []

    def start(self, label: str, host: str = "127.0.0.1", **extra: Any) -> FederatedServer:
        port = free_port()
        config = federation_config(
            self._tmp_path / label, self._db_configs(), port, host=host, **extra
        )
        server = start_federated(config, self._reactor, self._run_sync)
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop()


@pytest.fixture
def federation(
    tmp_path: Path,
    db_configs: Callable[[], DatabaseConfig],
    reactor_thread: Any,
    run_sync: Callable[..., Any],
) -> Iterator[Federation]:
    servers = Federation(tmp_path, db_configs, reactor_thread, run_sync)
    try:
        yield servers
    finally:
        servers.stop_all()
