"""A real Synapse (the ``matrix-synapse`` test dependency) run as a subprocess on loopback.

Its server name is ``127.0.0.1:<federation port>`` (an IP literal with a port: nobody needs
DNS or .well-known to reach it). It has two listeners: federation (with the key server) over
TLS with a self-signed certificate, and the Client-Server API over plain HTTP on another port.
It verifies no certificates, may connect to 127.0.0.1, trusts no notary and has every rate
limit out of the way; users are registered through the shared-secret admin API, as on Hearth.

``SynapseServer.log_tail()`` is what a failing test prints so the reader sees Synapse's side.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from homeserver.config.generate import write_self_signed_certificate, write_signing_key

SYNAPSE_SHARED_SECRET = "synapse-interop-shared-secret"

# Far beyond anything a test does: rate limiting is not what these tests look at.
_UNLIMITED = {"per_second": 10000, "burst_count": 100000}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def synapse_version() -> str:
    from importlib.metadata import version

    return version("matrix-synapse")


class SynapseServer:
    """One Synapse process with its own directory, database and ports."""

    def __init__(
        self,
        directory: Path,
        *,
        federation_port: int | None = None,
        client_port: int | None = None,
        database: dict[str, Any] | None = None,
    ) -> None:
        self.directory = directory
        self.federation_port = federation_port or free_port()
        self.client_port = client_port or free_port()
        self.server_name = f"127.0.0.1:{self.federation_port}"
        self.log_path = directory / "homeserver.log"
        self.config_path = directory / "homeserver.yaml"
        self._database = database or {
            "name": "sqlite3",
            "args": {"database": str(directory / "homeserver.db")},
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._write_config()

    # --- configuration -------------------------------------------------------------------

    def _write_config(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        (d / "media").mkdir(exist_ok=True)
        write_signing_key(d / "signing.key")
        write_self_signed_certificate(self.server_name, d / "tls.crt", d / "tls.key")
        log_config = {
            "version": 1,
            "formatters": {
                "precise": {
                    "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                    "%(request)s - %(message)s"
                }
            },
            "filters": {"context": {"()": "synapse.logging.context.LoggingContextFilter"}},
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "precise",
                    "filename": str(self.log_path),
                    "filters": ["context"],
                    "encoding": "utf8",
                }
            },
            "loggers": {
                "synapse": {"level": "INFO"},
                "synapse.storage.SQL": {"level": "WARNING"},
                "synapse.access": {"level": "INFO"},
            },
            "root": {"level": "INFO", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }
        (d / "log.yaml").write_text(yaml.safe_dump(log_config))
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "pid_file": str(d / "homeserver.pid"),
            "public_baseurl": f"http://127.0.0.1:{self.client_port}/",
            "listeners": [
                {
                    "port": self.federation_port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": True,
                    "x_forwarded": False,
                    "resources": [{"names": ["federation"], "compress": False}],
                },
                {
                    "port": self.client_port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                },
            ],
            "database": self._database,
            "log_config": str(d / "log.yaml"),
            "media_store_path": str(d / "media"),
            "signing_key_path": str(d / "signing.key"),
            "tls_certificate_path": str(d / "tls.crt"),
            "tls_private_key_path": str(d / "tls.key"),
            "federation_verify_certificates": False,
            # Loopback is blocked by default, as in Hearth; these tests federate over it.
            # Synapse checks IP-literal server names against the blocklist alone (its
            # allowlist does not apply there), hence the empty federation blocklist.
            "ip_range_whitelist": ["127.0.0.1/32"],
            "federation_ip_range_blacklist": [],
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "report_stats": False,
            "registration_shared_secret": SYNAPSE_SHARED_SECRET,
            "macaroon_secret_key": "interop-macaroon-secret",
            "form_secret": "interop-form-secret",
            "enable_registration": False,
            "presence": {"enabled": True},
            "allow_public_rooms_over_federation": True,
            "url_preview_enabled": False,
            "enable_metrics": False,
            "rc_message": _UNLIMITED,
            "rc_registration": _UNLIMITED,
            "rc_registration_token_validity": _UNLIMITED,
            "rc_login": {
                "address": _UNLIMITED,
                "account": _UNLIMITED,
                "failed_attempts": _UNLIMITED,
            },
            "rc_admin_redaction": _UNLIMITED,
            "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
            "rc_joins_per_room": _UNLIMITED,
            "rc_invites": {
                "per_room": _UNLIMITED,
                "per_user": _UNLIMITED,
                "per_issuer": _UNLIMITED,
            },
            "rc_third_party_invite": _UNLIMITED,
            "rc_3pid_validation": _UNLIMITED,
            "rc_key_requests": _UNLIMITED,
            "rc_room_creation": _UNLIMITED,
            "rc_presence": {"per_user": _UNLIMITED},
            "rc_delayed_event_mgmt": _UNLIMITED,
            "rc_federation": {
                "window_size": 1000,
                "sleep_limit": 10000,
                "sleep_delay": 0,
                "reject_limit": 10000,
                "concurrent": 100,
            },
            "federation_rr_transactions_per_room_per_second": 10000,
        }
        self.config_path.write_text(yaml.safe_dump(config))

    # --- process -------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start Synapse and wait until both listeners answer."""
        assert self._process is None, "already running"
        with open(self.directory / "stdout.log", "ab") as out:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
                cwd=self.directory,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "SYNAPSE_ASYNC_IO_REACTOR": "0"},
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise RuntimeError(f"Synapse exited with {code} while starting\n{self.log_tail()}")
            if self._ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Synapse not ready within {timeout}s\n{self.log_tail()}")
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            health = self.request("GET", "/health")
            key = self.federation_request("GET", "/_matrix/key/v2/server")
        except OSError:
            return False
        return health.status == 200 and key.status == 200

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (Synapse shuts down cleanly on it), then SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 150) -> str:
        parts = []
        for path in (self.directory / "stdout.log", self.log_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} (last {len(text)} lines) ---\n" + "\n".join(text))
        return "\n".join(parts)

    # --- HTTP ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """A request to the client listener (plain HTTP)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.client_port, timeout=60)
        return _exchange(connection, method, path, body, headers)

    def federation_request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """A request to the federation listener (TLS, certificate not checked)."""
        import ssl

        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.federation_port, timeout=60, context=context
        )
        return _exchange(connection, method, path, body, headers)

    def register_user(self, localpart: str, password: str = "password") -> dict[str, Any]:
        """Register through the shared-secret admin API; the response (user_id,
        access_token, device_id)."""
        nonce = self.request("GET", "/_synapse/admin/v1/register").json()["nonce"]
        mac = hmac.new(SYNAPSE_SHARED_SECRET.encode(), digestmod=hashlib.sha1)
        mac.update(f"{nonce}\0{localpart}\0{password}\0notadmin".encode())
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": False,
            "mac": mac.hexdigest(),
        }
        result = self.request("POST", "/_synapse/admin/v1/register", body)
        assert result.status == 200, result.body
        data: dict[str, Any] = result.json()
        return data


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def _exchange(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: dict[str, Any] | bytes | None,
    headers: dict[str, str] | None,
) -> Response:
    try:
        payload = json.dumps(body).encode() if isinstance(body, dict) else body
        connection.request(method, path, body=payload, headers=headers or {})
        response = connection.getresponse()
        return Response(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
        )
    finally:
        connection.close()
