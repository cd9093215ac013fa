"""``hearth register-user``: registers on a running server over its shared-secret API."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from homeserver.config import load_config
from homeserver.config.generate import write_signing_key
from tests.integration.harness import start_homeserver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "homeserver", *args], capture_output=True, text=True, timeout=60
    )


def _write_config(tmp_path: Path, db_config: Any, port: int, **extra: Any) -> Path:
    write_signing_key(tmp_path / "signing.key")
    data = {
        "server_name": "hs.test",
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "resources": [{"names": ["client"]}],
            }
        ],
        "database": {"name": db_config.name, "args": dict(db_config.args)},
        "signing_key_path": "signing.key",
        "bcrypt_rounds": 4,
        **extra,
    }
    path = tmp_path / "homeserver.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_register_user(tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any) -> None:
    port = _free_port()
    path = _write_config(tmp_path, db_config, port, registration_shared_secret="s3cret")
    running = start_homeserver(load_config(path), reactor_thread, run_sync)
    try:
        result = _cli("register-user", "-c", str(path), "-u", "alice", "-p", "pw", "--admin")
        assert result.returncode == 0, result.stderr
        assert "@alice:hs.test" in result.stdout
        login = running.login("alice", "pw")
        admin_api = running.request(
            "GET",
            "/_synapse/admin/v1/registration_tokens",
            access_token=login["access_token"],
        )
        assert admin_api.status == 200
        # With an explicit --url, not an admin; a taken name is reported.
        url = f"http://127.0.0.1:{port}/"
        result = _cli("register-user", "-c", str(path), "-u", "bob", "-p", "pw", "--url", url)
        assert result.returncode == 0, result.stderr
        bob = running.login("bob", "pw")
        admin_api = running.request(
            "GET", "/_synapse/admin/v1/registration_tokens", access_token=bob["access_token"]
        )
        assert admin_api.status == 403
        result = _cli("register-user", "-c", str(path), "-u", "bob", "-p", "pw")
        assert result.returncode == 1
        assert "M_USER_IN_USE" in result.stderr
    finally:
        running.stop()


def test_register_user_errors(tmp_path: Path, db_config: Any) -> None:
    port = _free_port()
    path = _write_config(tmp_path, db_config, port)
    result = _cli("register-user", "-c", str(path), "-u", "alice", "-p", "pw")
    assert result.returncode == 1
    assert "registration_shared_secret" in result.stderr
    path = _write_config(tmp_path, db_config, port, registration_shared_secret="s")
    result = _cli("register-user", "-c", str(path), "-u", "alice", "-p", "pw")
    assert result.returncode == 1
    assert "cannot reach" in result.stderr  # nothing listens on the port
