"""Hearth as a real process (``python -m homeserver run -c ...``), for tests that stop a
server and start it again: a stopped process answers nothing, as a server that is down.

Federation, keys and client on one TLS listener with a self-signed certificate, named
``127.0.0.1:<port>``, verification off and 127.0.0.1 allowed, as in federation_helpers;
with ``tls=False``, client and keys on a plain HTTP listener (as behind a reverse proxy).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from homeserver.config.generate import write_self_signed_certificate, write_signing_key
from storage.engine import DatabaseConfig
from tests.integration.harness import TEST_SHARED_SECRET, HttpResult
from tests.interop.synapse_server import free_port

REPO = Path(__file__).resolve().parents[2]


class HearthProcess:
    def __init__(
        self, directory: Path, database: DatabaseConfig, *, tls: bool = True, **settings: Any
    ) -> None:
        self.directory = directory
        self.tls = tls
        self.port = free_port()
        self.server_name = f"127.0.0.1:{self.port}"
        self.log_path = directory / "hearth.log"
        self.config_path = directory / "homeserver.yaml"
        self._process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        write_signing_key(directory / "signing.key")
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": tls,
                    "resources": [
                        {"names": ["client", "federation", "keys"] if tls else ["client", "keys"]}
                    ],
                }
            ],
            "database": {"name": database.name, "args": dict(database.args)},
            "signing_key_path": str(directory / "signing.key"),
            "media_store_path": str(directory / "media"),
            "federation_verify_certificates": False,
            "ip_range_whitelist": ["127.0.0.1/32"],
            "trusted_key_servers": [],
            "registration_shared_secret": TEST_SHARED_SECRET,
            "bcrypt_rounds": 4,
            **settings,
        }
        if tls:
            cert, key = directory / "tls.crt", directory / "tls.key"
            write_self_signed_certificate(self.server_name, cert, key)
            config["tls_certificate_path"] = str(cert)
            config["tls_private_key_path"] = str(key)
        self.config_path.write_text(yaml.safe_dump(config))

    def start(self, timeout: float = 60.0) -> None:
        assert self._process is None, "already running"
        with open(self.log_path, "ab") as out:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "homeserver", "run", "-c", str(self.config_path)],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise RuntimeError(f"Hearth exited with {code} while starting\n{self.log_tail()}")
            try:
                if self.request("GET", "/_matrix/key/v2/server").status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Hearth not ready within {timeout}s\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: Hearth shuts down gracefully and exits."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def log_tail(self, lines: int = 150) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.log_path} ---\n" + "\n".join(text)

    @property
    def pid(self) -> int:
        assert self._process is not None, "not running"
        return self._process.pid

    def https(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResult:
        assert self.tls, "this server listens on plain HTTP"
        return self.request(method, path, body, headers)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResult:
        connection: http.client.HTTPConnection
        if self.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            connection = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=60, context=context
            )
        else:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
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
