"""Fixtures for the federation interop tests.

``synapse`` (session): one real Synapse for the whole run (it starts in a few seconds, but
once is enough: every test registers fresh users and makes fresh rooms).
``hearth`` (function): an in-process Hearth federating over TLS on loopback, on the test's
database engine (``db_config``: SQLite and PostgreSQL).
A failing test gets the part of Synapse's log written during it as a report section; Hearth's
log records (INFO and up) are pytest's captured log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import federation_helpers
from tests.integration.federation_helpers import Federation
from tests.interop.federation_sides import HearthSide, SynapseSide
from tests.interop.synapse_server import SynapseServer

db_configs = federation_helpers.db_configs
federation = federation_helpers.federation

_synapse_servers: list[SynapseServer] = []


@pytest.fixture(scope="session")
def synapse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    server = SynapseServer(tmp_path_factory.mktemp("synapse"))
    server.start()
    _synapse_servers.append(server)
    try:
        yield server
    finally:
        server.stop()
        _synapse_servers.remove(server)


@pytest.fixture
def synapse(synapse_server: SynapseServer) -> SynapseSide:
    assert synapse_server.running, f"Synapse has died\n{synapse_server.log_tail()}"
    return SynapseSide(synapse_server)


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


@pytest.fixture
def hearth(federation: Federation, caplog: pytest.LogCaptureFixture) -> HearthSide:
    caplog.set_level(logging.INFO)
    return HearthSide(federation.start("hearth", **HEARTH_SETTINGS))


@pytest.fixture
def extra_synapse(tmp_path: Path) -> Iterator[Callable[[], SynapseServer]]:
    """Further Synapse servers of the test's own (stopped at its end)."""
    started: list[SynapseServer] = []

    def make() -> SynapseServer:
        server = SynapseServer(tmp_path / f"synapse{len(started) + 1}")
        server.start()
        started.append(server)
        _synapse_servers.append(server)
        return server

    yield make
    for server in started:
        server.stop()
        _synapse_servers.remove(server)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    offsets = {s: _log_size(s) for s in _synapse_servers}
    item.stash[_offsets_key] = offsets
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[Any]:
    outcome: Any = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    offsets = item.stash.get(_offsets_key, {})
    for server in list(_synapse_servers):
        start = offsets.get(server, 0)
        try:
            with open(server.log_path, "rb") as f:
                f.seek(start)
                text = f.read().decode(errors="replace")
        except OSError:
            continue
        lines = text.splitlines()[-400:]
        report.sections.append(
            (f"Synapse {server.server_name} log during the test", "\n".join(lines))
        )


_offsets_key = pytest.StashKey[dict[SynapseServer, int]]()


def _log_size(server: SynapseServer) -> int:
    try:
        return server.log_path.stat().st_size
    except OSError:
        return 0
