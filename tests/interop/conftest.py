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

from storage.engine import DatabaseConfig
from tests.integration import federation_helpers
from tests.integration.federation_helpers import Federation
from tests.interop.federation_sides import HEARTH_SETTINGS, HearthSide, SynapseSide
from tests.interop.hearth_process import HearthProcess
from tests.interop.synapse_server import SynapseServer

db_configs = federation_helpers.db_configs
federation = federation_helpers.federation

# Servers run as processes whose log a failing test shows (Synapse, Hearth processes).
log_sources: list[Any] = []


@pytest.fixture(scope="session")
def synapse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    server = SynapseServer(tmp_path_factory.mktemp("synapse"))
    server.start()
    log_sources.append(server)
    try:
        yield server
    finally:
        server.stop()
        log_sources.remove(server)


@pytest.fixture
def synapse(synapse_server: SynapseServer) -> SynapseSide:
    assert synapse_server.running, f"Synapse has died\n{synapse_server.log_tail()}"
    return SynapseSide(synapse_server)


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
        log_sources.append(server)
        return server

    yield make
    for server in started:
        server.stop()
        log_sources.remove(server)


@pytest.fixture
def hearth_processes(
    tmp_path: Path, db_configs: Callable[[], DatabaseConfig]
) -> Iterator[Callable[..., HearthProcess]]:
    """Hearth servers as processes of the test's own (stopped at its end), on the test's
    database engine; ``make(label, tls=False)`` for one on plain HTTP."""
    started: list[HearthProcess] = []

    def make(label: str, tls: bool = True) -> HearthProcess:
        server = HearthProcess(tmp_path / label, db_configs(), tls=tls, **HEARTH_SETTINGS)
        server.start()
        started.append(server)
        log_sources.append(server)
        return server

    yield make
    for server in started:
        server.stop()
        log_sources.remove(server)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    offsets = {id(s): _log_size(s) for s in log_sources}
    item.stash[_offsets_key] = offsets
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[Any]:
    outcome: Any = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    offsets = item.stash.get(_offsets_key, {})
    for server in list(log_sources):
        start = offsets.get(id(server), 0)
        try:
            with open(server.log_path, "rb") as f:
                f.seek(start)
                text = f.read().decode(errors="replace")
        except OSError:
            continue
        lines = text.splitlines()[-400:]
        report.sections.append(
            (f"{type(server).__name__} {server.server_name} log during the test", "\n".join(lines))
        )


_offsets_key = pytest.StashKey[dict[int, int]]()


def _log_size(server: Any) -> int:
    try:
        return server.log_path.stat().st_size
    except OSError:
        return 0
