"""The ``hearth`` command line, run as a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from homeserver import __version__

HEARTH = [sys.executable, "-m", "homeserver"]
REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HEARTH, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"hearth {__version__}"


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "hearth"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert result.stdout.strip() == f"hearth {__version__}"


def test_generate_config_writes_config_key_and_cert(tmp_path: Path) -> None:
    result = run_cli(
        "generate-config",
        "--server-name",
        "hs.test",
        "--data-dir",
        str(tmp_path),
        "--generate-tls-cert",
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((tmp_path / "homeserver.yaml").read_text())
    assert config["server_name"] == "hs.test"
    assert (tmp_path / "hs.test.signing.key").read_text().startswith("ed25519 a_")
    assert (tmp_path / "hs.test.tls.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    again = run_cli("generate-config", "--server-name", "hs.test", "--data-dir", str(tmp_path))
    assert again.returncode == 1
    assert "already exists" in again.stderr


def write_config(tmp_path: Path, db_config: Any, **overrides: Any) -> tuple[Path, int]:
    run_cli("generate-config", "--server-name", "hs.test", "--data-dir", str(tmp_path))
    path = tmp_path / "homeserver.yaml"
    config = yaml.safe_load(path.read_text())
    port = free_port()
    config["listeners"] = [
        {
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "resources": [{"names": ["client", "federation", "metrics"]}],
        }
    ]
    config["database"] = {"name": db_config.name, "args": dict(db_config.args)}
    config.update(overrides)
    path.write_text(yaml.safe_dump(config))
    return path, port


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"server_name": "not a name"}, "server_name"),
        ({"enable_registration": "maybe"}, "enable_registration"),
        ({"listeners": [{"port": "http"}]}, "listeners[0].port"),
        ({"default_room_version": "99"}, "default_room_version"),
        ({"signing_key_path": "missing.key"}, "signing_key_path"),
        ({"log_config": "missing.log.yaml"}, "log_config"),
    ],
)
def test_broken_config_exits_1_with_one_line(tmp_path: Path, change: dict, key: str) -> None:
    run_cli("generate-config", "--server-name", "hs.test", "--data-dir", str(tmp_path))
    path = tmp_path / "homeserver.yaml"
    config = yaml.safe_load(path.read_text())
    config.update(change)
    path.write_text(yaml.safe_dump(config))
    result = run_cli("run", "-c", str(path))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hearth: error: ")
    assert f"'{key}'" in lines[0]
    assert "Traceback" not in result.stderr


def test_unparseable_config_file_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "homeserver.yaml"
    path.write_text("server_name: [oops\n")
    result = run_cli("run", "-c", str(path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "valid YAML" in result.stderr


def test_port_in_use_exits_1(tmp_path: Path, db_config: Any) -> None:
    path, port = write_config(tmp_path, db_config)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        result = run_cli("run", "-c", str(path))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("hearth: error: cannot listen on 127.0.0.1 port")


def wait_for_health(port: int, process: subprocess.Popen[str], deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"hearth exited early: {process.communicate()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.read() == b"OK":
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("hearth did not answer /health")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_and_stops_cleanly_on_signal(
    tmp_path: Path, db_config: Any, stop_signal: signal.Signals
) -> None:
    path, port = write_config(tmp_path, db_config, unknown_synapse_key=1)
    process = subprocess.Popen(
        [*HEARTH, "run", "-c", str(path)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for_health(port, process)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/_matrix/client/versions", timeout=5
        ) as response:
            assert "v1.19" in json.load(response)["versions"]
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "config key 'unknown_synapse_key' is not used by Hearth; ignored" in stderr
    assert stderr.count("unknown_synapse_key") == 1
    assert "stopped cleanly" in stderr
    assert "Traceback" not in stderr


def test_first_run_with_data_dir_generates_everything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    process = subprocess.Popen(
        [*HEARTH, "run", "--data-dir", str(data), "--server-name", "first.test"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        wait_for_health(8008, process) if _port_free(8008) else None
        deadline = time.monotonic() + 30
        while not (data / "homeserver.db").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (data / "homeserver.yaml").exists()
        assert (data / "first.test.signing.key").exists()
        assert (data / "homeserver.db").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_database_from_a_newer_hearth_is_refused(
    tmp_path: Path, db_config: Any, run_sync: Any
) -> None:
    from storage.engine import create_database
    from storage.schema import prepare_database

    async def mark_newer() -> None:
        db = create_database(db_config)
        try:
            await prepare_database(db)
            await db.execute(
                "future_schema",
                "INSERT INTO schema_version (version, name, applied_ts) VALUES (?, ?, ?)",
                9999,
                "9999_from_the_future.sql",
                0,
            )
        finally:
            await db.close()

    run_sync(mark_newer())
    path, _ = write_config(tmp_path, db_config)
    result = run_cli("run", "-c", str(path))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("hearth: error: cannot prepare the database:")
    assert "9999" in last and "newer" in last
    assert "Traceback" not in result.stderr
