"""Fixtures shared by the whole test suite.

Twisted
    ``reactor_thread`` (session): the global Twisted reactor, running in a background thread
    for the whole session (a reactor can only run once per process). Yields the reactor.

    ``run_sync`` (function): a function ``run_sync(work, timeout=30.0)`` that runs ``work`` on
    the reactor thread and blocks the test until it is done, returning its result or raising
    its exception. ``work`` is a coroutine (``run_sync(db.close())``) or a no-argument callable
    returning a value, a Deferred or a coroutine (``run_sync(lambda: reactor.listenTCP(...))``).
    Everything that touches Twisted objects must go through it, since the reactor is not
    thread-safe. On timeout the work is cancelled and TimeoutError raised.

Databases (every storage test runs on both engines)
    ``db_config`` (function, parametrized "sqlite" / "postgres"): a DatabaseConfig for an empty
    database of its own: a file in ``tmp_path``, or a fresh PostgreSQL database on
    127.0.0.1:5432 (user postgres) dropped after the test. The postgres case carries the
    ``postgres`` mark; if the server is unreachable those tests fail, they are not skipped.
    To run one engine only: ``-k sqlite`` / ``-m "not postgres"``. To pin a test to one
    engine: ``@pytest.mark.parametrize("db_config", [POSTGRES], indirect=True)`` with
    ``POSTGRES``/``SQLITE`` from this module.

    ``database`` (function): a Database on ``db_config``, schema prepared with
    ``prepare_database``, closed after the test.

PostgreSQL location can be overridden with HEARTH_TEST_PGHOST, HEARTH_TEST_PGPORT and
HEARTH_TEST_PGUSER.
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import psycopg2
import pytest
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.python.failure import Failure

from storage.engine import Database, DatabaseConfig, create_database
from storage.schema import prepare_database

T = TypeVar("T")

PG_HOST = os.environ.get("HEARTH_TEST_PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("HEARTH_TEST_PGPORT", "5432"))
PG_USER = os.environ.get("HEARTH_TEST_PGUSER", "postgres")

SQLITE = pytest.param("sqlite", id="sqlite")
POSTGRES = pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)


# --- Twisted -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def reactor_thread() -> Iterator[Any]:
    from twisted.internet import reactor as global_reactor

    # Any: the reactor's interfaces are zope ones, which mypy cannot read without a plugin.
    reactor: Any = global_reactor
    running = threading.Event()
    reactor.callWhenRunning(running.set)
    thread = threading.Thread(
        target=reactor.run,
        kwargs={"installSignalHandlers": False},
        name="twisted-reactor",
        daemon=True,
    )
    thread.start()
    if not running.wait(10):
        pytest.fail("the Twisted reactor did not start within 10s")
    yield reactor
    # Stopping fires the "before shutdown" triggers, which close any Database left open.
    reactor.callFromThread(reactor.stop)
    thread.join(30)


def _run_on_reactor(
    reactor: Any,
    work: Coroutine[Any, Any, T] | Callable[[], Any],
    timeout: float = 30.0,
) -> Any:
    done = threading.Event()
    outcome: list[Any] = []
    started: list[Deferred[Any]] = []

    def finish(result: object) -> None:
        outcome.append(result)
        done.set()

    def start() -> None:
        if isinstance(work, Coroutine):
            d: Deferred[Any] = ensureDeferred(work)
        else:
            d = maybeDeferred(work)
            d.addCallback(lambda r: ensureDeferred(r) if isinstance(r, Coroutine) else r)
        started.append(d)
        d.addBoth(finish)

    reactor.callFromThread(start)
    if not done.wait(timeout):
        if started:
            reactor.callFromThread(started[0].cancel)
        raise TimeoutError(f"{work!r} did not finish on the reactor within {timeout}s")
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


@pytest.fixture
def run_sync(reactor_thread: Any) -> Callable[..., Any]:
    def run(work: Coroutine[Any, Any, T] | Callable[[], Any], timeout: float = 30.0) -> Any:
        return _run_on_reactor(reactor_thread, work, timeout)

    return run


# --- Databases -----------------------------------------------------------------------------


class _PostgresServer:
    """Creates one fresh database per test, named after this pytest run."""

    def __init__(self) -> None:
        self.prefix = f"hearth_test_{os.getpid()}_{secrets.token_hex(3)}"
        self._counter = itertools.count(1)
        self._template: str | None = None

    def _admin(self) -> Any:
        conn = psycopg2.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5
        )
        # CREATE/DROP DATABASE cannot run inside a transaction block.
        conn.autocommit = True
        return conn

    def check(self) -> None:
        try:
            self._admin().close()
            return
        except psycopg2.OperationalError as e:
            error = str(e).strip()
        # Outside the except block, so the report is the message alone, not a chained traceback.
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} as {PG_USER}: {error}\n"
            "Start it (pg_ctlcluster --skip-systemctl-redirect 15 main start) or run only "
            'the SQLite tests with -m "not postgres".',
            pytrace=False,
        )

    def create(self, template: str | None = None) -> str:
        name = f"{self.prefix}_{next(self._counter)}"
        conn = self._admin()
        try:
            if template is not None:
                conn.cursor().execute(f"CREATE DATABASE {name} TEMPLATE {template}")
            else:
                # template0, so nothing added to template1 on this server leaks into the
                # tests; UTF8 and C collation are what Hearth expects of production.
                conn.cursor().execute(
                    f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"
                    " LC_COLLATE 'C' LC_CTYPE 'C'"
                )
        finally:
            conn.close()
        return name

    def migrated_template(self, run_sync: Callable[..., Any]) -> str:
        """A database with every migration applied, made once per run, to copy from."""
        if self._template is None:
            name = self.create()

            async def migrate() -> None:
                db = create_database(self.config(name))
                try:
                    await prepare_database(db)
                finally:
                    await db.close()

            run_sync(migrate())
            self._template = name
        return self._template

    def drop(self, name: str) -> None:
        conn = self._admin()
        try:
            # FORCE: a test that failed half-way may have left connections open.
            conn.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            conn.close()

    def drop_leftovers(self) -> None:
        conn = self._admin()
        try:
            cur = conn.cursor()
            cur.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (self.prefix + "\\_%",)
            )
            for (name,) in cur.fetchall():
                cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            conn.close()

    def config(self, name: str, **args: Any) -> DatabaseConfig:
        return DatabaseConfig(
            "psycopg2",
            {"host": PG_HOST, "port": PG_PORT, "user": PG_USER, "database": name, **args},
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[_PostgresServer]:
    server = _PostgresServer()
    server.check()
    yield server
    server.drop_leftovers()


@pytest.fixture(params=[SQLITE, POSTGRES])
def db_config(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[DatabaseConfig]:
    if request.param == "sqlite":
        yield DatabaseConfig("sqlite3", {"database": str(tmp_path / "hearth.db")})
        return
    server: _PostgresServer = request.getfixturevalue("postgres_server")
    if request.node.get_closest_marker("empty_database") is not None:
        name = server.create()
    else:
        # A copy of a database with every migration applied: start-up finds nothing to
        # do, which saves each test the schema's creation (the migrations themselves are
        # tested on empty databases, in the modules marked empty_database).
        run_sync = request.getfixturevalue("run_sync")
        name = server.create(template=server.migrated_template(run_sync))
    try:
        yield server.config(name)
    finally:
        server.drop(name)


@pytest.fixture
def database(db_config: DatabaseConfig, run_sync: Callable[..., Any]) -> Iterator[Database]:
    async def open_database() -> Database:
        db = create_database(db_config)
        try:
            await prepare_database(db)
        except BaseException:
            await db.close()
            raise
        return db

    db: Database = run_sync(open_database())
    try:
        yield db
    finally:
        run_sync(db.close())
