"""The storage engine on real SQLite and real PostgreSQL."""

from __future__ import annotations

import contextvars
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest
from prometheus_client import REGISTRY
from twisted.internet.defer import Deferred

from storage.engine import (
    MAX_ATTEMPTS,
    Cursor,
    Database,
    DatabaseClosedError,
    DatabaseConfig,
    EngineError,
    create_database,
)
from tests.conftest import POSTGRES, SQLITE

# Migrations and the engine itself are tested on empty databases.
pytestmark = pytest.mark.empty_database


RunSync = Callable[..., Any]


def _make_table(db: Database, run_sync: RunSync) -> None:
    run_sync(db.execute("create_table", "CREATE TABLE things (id INTEGER PRIMARY KEY, v TEXT)"))


def _values(db: Database, run_sync: RunSync) -> list[tuple[Any, ...]]:
    return run_sync(db.execute("read", "SELECT id, v FROM things ORDER BY id"))


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_commit_on_success(database: Database, run_sync: RunSync) -> None:
    _make_table(database, run_sync)

    def insert(cursor: Cursor, v: str) -> int:
        cursor.execute("INSERT INTO things (id, v) VALUES (?, ?)", (1, v))
        cursor.execute("INSERT INTO things (id, v) VALUES (?, ?)", (2, v + "!"))
        return cursor.rowcount

    assert run_sync(database.run_interaction("insert", insert, "a")) == 1
    assert _values(database, run_sync) == [(1, "a"), (2, "a!")]


def test_rollback_on_exception_leaves_nothing(database: Database, run_sync: RunSync) -> None:
    _make_table(database, run_sync)
    calls = []

    def half_then_fail(cursor: Cursor) -> None:
        calls.append(1)
        cursor.execute("INSERT INTO things (id, v) VALUES (?, ?)", (1, "written"))
        raise ValueError("changed my mind")

    with pytest.raises(ValueError, match="changed my mind"):
        run_sync(database.run_interaction("half", half_then_fail))
    assert _values(database, run_sync) == []
    # Only retryable errors run the function again.
    assert calls == [1]


def test_failed_statement_rolls_back_earlier_ones(database: Database, run_sync: RunSync) -> None:
    _make_table(database, run_sync)
    run_sync(database.execute("seed", "INSERT INTO things (id, v) VALUES (?, ?)", 1, "one"))

    def duplicate(cursor: Cursor) -> None:
        cursor.execute("INSERT INTO things (id, v) VALUES (?, ?)", (2, "two"))
        cursor.execute("INSERT INTO things (id, v) VALUES (?, ?)", (1, "again"))

    with pytest.raises((sqlite3.IntegrityError, psycopg2.IntegrityError)):
        run_sync(database.run_interaction("duplicate", duplicate))
    assert _values(database, run_sync) == [(1, "one")]
    # The connection is usable after the failure (PostgreSQL: not stuck in an aborted txn).
    run_sync(database.execute("after", "INSERT INTO things (id, v) VALUES (?, ?)", 2, "two"))
    assert _values(database, run_sync) == [(1, "one"), (2, "two")]


def test_placeholders_and_literal_percent(database: Database, run_sync: RunSync) -> None:
    _make_table(database, run_sync)

    def fill(cursor: Cursor) -> list[tuple[Any, ...]]:
        cursor.executemany(
            "INSERT INTO things (id, v) VALUES (?, ?)",
            [(1, "100% sure"), (2, "what?"), (3, "naïve ☃"), (4, None)],
        )
        cursor.execute(
            "SELECT id, '?' AS q, v FROM things WHERE v LIKE '%sure' OR v = ? OR id = ?"
            " ORDER BY id",
            ("what?", 3),
        )
        return cursor.fetchall()

    assert run_sync(database.run_interaction("fill", fill)) == [
        (1, "?", "100% sure"),
        (2, "?", "what?"),
        (3, "?", "naïve ☃"),
    ]
    assert run_sync(database.execute("null", "SELECT v FROM things WHERE v IS NULL")) == [(None,)]


def test_execute_returns_rows_or_nothing(database: Database, run_sync: RunSync) -> None:
    assert (
        run_sync(database.execute("ddl", "CREATE TABLE things (id INTEGER PRIMARY KEY, v TEXT)"))
        == []
    )
    assert run_sync(database.execute("ins", "INSERT INTO things VALUES (?, ?)", 7, "x")) == []
    assert run_sync(database.execute("sel", "SELECT v, id FROM things WHERE id = ?", 7)) == [
        ("x", 7)
    ]


def test_bytes_round_trip_as_bytes(database: Database, run_sync: RunSync) -> None:
    blob_type = "BYTEA" if database.engine_name == "psycopg2" else "BLOB"
    run_sync(database.execute("ddl", f"CREATE TABLE blobs (b {blob_type})"))
    data = bytes(range(256))
    run_sync(database.execute("ins", "INSERT INTO blobs (b) VALUES (?)", data))
    rows = run_sync(database.execute("sel", "SELECT b FROM blobs"))
    assert rows == [(data,)]
    assert type(rows[0][0]) is bytes


def test_upsert_returning_and_batch(database: Database, run_sync: RunSync) -> None:
    _make_table(database, run_sync)

    def work(cursor: Cursor) -> tuple[Any, ...]:
        cursor.execute_batch(
            "INSERT INTO things (id, v) VALUES (?, ?)", [(i, f"v{i}") for i in range(250)]
        )
        cursor.execute(
            "INSERT INTO things (id, v) VALUES (?, ?)"
            " ON CONFLICT (id) DO UPDATE SET v = excluded.v RETURNING id, v",
            (5, "new"),
        )
        returned = cursor.fetchone()
        cursor.execute("UPDATE things SET v = ? WHERE id < ?", ("low", 10))
        assert cursor.rowcount == 10
        assert returned is not None
        return returned

    assert run_sync(database.run_interaction("work", work)) == (5, "new")
    assert run_sync(database.execute("count", "SELECT COUNT(*) FROM things")) == [(250,)]


def test_foreign_keys_enforced(database: Database, run_sync: RunSync) -> None:
    def schema(cursor: Cursor) -> None:
        cursor.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        cursor.execute("CREATE TABLE child (pid INTEGER NOT NULL REFERENCES parent (id))")

    run_sync(database.run_interaction("schema", schema))
    with pytest.raises((sqlite3.IntegrityError, psycopg2.IntegrityError)):
        run_sync(database.execute("orphan", "INSERT INTO child (pid) VALUES (?)", 42))


def test_after_commit_callbacks_run_once_on_commit_only(
    database: Database, run_sync: RunSync
) -> None:
    _make_table(database, run_sync)
    seen: list[tuple[str, str]] = []

    def note(what: str) -> None:
        seen.append((what, threading.current_thread().name))

    def ok(cursor: Cursor) -> None:
        cursor.execute("INSERT INTO things (id, v) VALUES (1, 'a')")
        cursor.call_after_commit(note, "committed")

    def fails(cursor: Cursor) -> None:
        cursor.call_after_commit(note, "rolled back")
        raise RuntimeError("no")

    run_sync(database.run_interaction("ok", ok))
    with pytest.raises(RuntimeError):
        run_sync(database.run_interaction("fails", fails))
    assert seen == [("committed", "twisted-reactor")]


def test_context_follows_into_pool_thread(database: Database, run_sync: RunSync) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    def read(cursor: Cursor) -> str:
        return var.get()

    async def go() -> str:
        var.set("request-17")
        return await database.run_interaction("ctx", read)

    assert run_sync(go()) == "request-17"


def test_metrics_observe_transactions(database: Database, run_sync: RunSync) -> None:
    labels = {"desc": "metrics_probe"}
    before = _sample("hearth_db_transaction_seconds_count", labels)
    for _ in range(3):
        run_sync(database.execute("metrics_probe", "SELECT 1"))
    assert _sample("hearth_db_transaction_seconds_count", labels) == before + 3
    assert _sample("hearth_db_transaction_seconds_sum", labels) > 0


def test_close_waits_for_in_flight_transaction(
    db_config: DatabaseConfig, run_sync: RunSync
) -> None:
    from storage.schema import prepare_database

    release = threading.Event()

    def slow_insert(cursor: Cursor, started: Deferred[None], reactor: Any) -> None:
        cursor.execute("INSERT INTO things (id, v) VALUES (1, 'slow')")
        reactor.callFromThread(started.callback, None)
        assert release.wait(10)

    async def scenario() -> tuple[bool, str]:
        from twisted.internet import reactor

        db = create_database(db_config)
        await prepare_database(db)
        await db.execute("ddl", "CREATE TABLE things (id INTEGER PRIMARY KEY, v TEXT)")
        started: Deferred[None] = Deferred()
        in_flight = Deferred.fromCoroutine(
            db.run_interaction("slow", slow_insert, started, reactor)
        )
        await started
        closing = Deferred.fromCoroutine(db.close())
        refused = ""
        try:
            await db.run_interaction("late", lambda c: None)
        except DatabaseClosedError as e:
            refused = str(e)
        closed_early = closing.called
        release.set()
        await closing
        assert in_flight.called
        await in_flight
        return closed_early, refused

    closed_early, refused = run_sync(scenario())
    assert not closed_early
    assert "closed" in refused and "'late'" in refused

    async def reopen() -> list[tuple[Any, ...]]:
        db = create_database(db_config)
        try:
            return await db.execute("check", "SELECT id, v FROM things")
        finally:
            await db.close()

    assert run_sync(reopen()) == [(1, "slow")]


def test_close_is_idempotent_and_refuses_afterwards(
    db_config: DatabaseConfig, run_sync: RunSync
) -> None:
    async def scenario() -> None:
        db = create_database(db_config)
        await db.execute("one", "SELECT 1")
        await db.close()
        await db.close()
        with pytest.raises(DatabaseClosedError):
            await db.execute("two", "SELECT 1")

    run_sync(scenario())


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(EngineError, match="unknown database engine 'mysql'"):
        create_database(DatabaseConfig("mysql", {}))


def test_sqlite_needs_a_path() -> None:
    with pytest.raises(EngineError, match="database"):
        create_database(DatabaseConfig("sqlite3", {}))


@pytest.mark.parametrize("db_config", [SQLITE], indirect=True)
def test_sqlite_pragmas(database: Database, run_sync: RunSync) -> None:
    def pragmas(cursor: Cursor) -> list[Any]:
        out = []
        for name in ("journal_mode", "synchronous", "foreign_keys"):
            cursor.execute(f"PRAGMA {name}")
            row = cursor.fetchone()
            assert row is not None
            out.append(row[0])
        return out

    # synchronous NORMAL is 1.
    assert run_sync(database.run_interaction("pragmas", pragmas)) == ["wal", 1, 1]


@pytest.mark.parametrize("db_config", [SQLITE], indirect=True)
def test_sqlite_retries_while_another_process_holds_the_lock(
    db_config: DatabaseConfig, run_sync: RunSync
) -> None:
    path = db_config.args["database"]
    # check_same_thread=False: a timer thread commits, releasing the lock.
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, v TEXT)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO things VALUES (1, 'other')")
    # A short busy timeout so the lock surfaces as "database is locked" and our retry acts.
    config = DatabaseConfig("sqlite3", {"database": path, "timeout": 0.02})
    calls = []

    def insert(cursor: Cursor) -> None:
        calls.append(1)
        cursor.execute("INSERT INTO things VALUES (2, 'ours')")

    labels = {"desc": "locked_insert", "reason": "database_locked"}
    retries_before = _sample("hearth_db_transaction_retries_total", labels)
    timer = threading.Timer(0.15, other.commit)
    timer.start()

    async def scenario() -> list[tuple[Any, ...]]:
        db = create_database(config)
        try:
            await db.run_interaction("locked_insert", insert)
            return await db.execute("read", "SELECT id, v FROM things ORDER BY id")
        finally:
            await db.close()

    try:
        assert run_sync(scenario()) == [(1, "other"), (2, "ours")]
    finally:
        timer.join()
        other.close()
    # The function never ran while locked: BEGIN IMMEDIATE is what failed.
    assert calls == [1]
    assert _sample("hearth_db_transaction_retries_total", labels) > retries_before


@pytest.mark.parametrize("db_config", [SQLITE], indirect=True)
def test_sqlite_gives_up_after_bounded_attempts(
    db_config: DatabaseConfig, run_sync: RunSync
) -> None:
    path = db_config.args["database"]
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE held (x INTEGER)")
    labels = {"desc": "never_gets_lock", "reason": "database_locked"}
    retries_before = _sample("hearth_db_transaction_retries_total", labels)

    async def scenario() -> None:
        db = create_database(DatabaseConfig("sqlite3", {"database": path, "timeout": 0.001}))
        try:
            await db.execute("never_gets_lock", "CREATE TABLE mine (x INTEGER)")
        finally:
            await db.close()

    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            run_sync(scenario())
    finally:
        other.rollback()
        other.close()
    assert _sample("hearth_db_transaction_retries_total", labels) == retries_before + (
        MAX_ATTEMPTS - 1
    )


@pytest.mark.parametrize("db_config", [POSTGRES], indirect=True)
def test_postgres_retries_serialization_failure(database: Database, run_sync: RunSync) -> None:
    run_sync(database.execute("ddl", "CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
    run_sync(database.execute("seed", "INSERT INTO counter VALUES (1, 0)"))
    a_has_snapshot = threading.Event()
    b_committed = threading.Event()
    a_attempts = []

    def increment_a(cursor: Cursor) -> None:
        a_attempts.append(1)
        # Reading fixes A's REPEATABLE READ snapshot before B's update commits.
        cursor.execute("SELECT n FROM counter WHERE id = 1")
        a_has_snapshot.set()
        assert b_committed.wait(10)
        cursor.execute("UPDATE counter SET n = n + 1 WHERE id = 1")

    def increment_b(cursor: Cursor) -> None:
        cursor.execute("UPDATE counter SET n = n + 1 WHERE id = 1")

    labels = {"desc": "increment_a", "reason": "serialization_failure"}
    retries_before = _sample("hearth_db_transaction_retries_total", labels)

    async def scenario() -> None:
        from twisted.internet.threads import deferToThread

        a = Deferred.fromCoroutine(database.run_interaction("increment_a", increment_a))
        assert await deferToThread(a_has_snapshot.wait, 10)
        await database.run_interaction("increment_b", increment_b)
        b_committed.set()
        await a

    run_sync(scenario())
    assert run_sync(database.execute("read", "SELECT n FROM counter")) == [(2,)]
    assert len(a_attempts) == 2
    assert _sample("hearth_db_transaction_retries_total", labels) == retries_before + 1


@pytest.mark.parametrize("db_config", [POSTGRES], indirect=True)
def test_postgres_retries_deadlock(database: Database, run_sync: RunSync) -> None:
    run_sync(database.execute("ddl", "CREATE TABLE pair (id INTEGER PRIMARY KEY, n INTEGER)"))
    run_sync(database.execute("seed", "INSERT INTO pair VALUES (1, 0), (2, 0)"))
    holds = {1: threading.Event(), 2: threading.Event()}

    def lock_both(cursor: Cursor, first: int, second: int) -> None:
        # Detect the deadlock quickly; the server default is 1s.
        cursor.execute("SET LOCAL deadlock_timeout = '50ms'")
        cursor.execute("UPDATE pair SET n = n + 1 WHERE id = ?", (first,))
        holds[first].set()
        assert holds[second].wait(10)
        cursor.execute("UPDATE pair SET n = n + 1 WHERE id = ?", (second,))

    before = sum(
        _sample("hearth_db_transaction_retries_total", {"desc": "lock_both", "reason": r})
        for r in ("deadlock", "serialization_failure")
    )

    async def scenario() -> None:
        from twisted.internet.defer import gatherResults

        await gatherResults(
            [
                Deferred.fromCoroutine(database.run_interaction("lock_both", lock_both, 1, 2)),
                Deferred.fromCoroutine(database.run_interaction("lock_both", lock_both, 2, 1)),
            ],
            consumeErrors=True,
        )

    run_sync(scenario())
    assert run_sync(database.execute("read", "SELECT id, n FROM pair ORDER BY id")) == [
        (1, 2),
        (2, 2),
    ]
    after = _sample(
        "hearth_db_transaction_retries_total", {"desc": "lock_both", "reason": "deadlock"}
    )
    assert after > 0
    assert (
        sum(
            _sample("hearth_db_transaction_retries_total", {"desc": "lock_both", "reason": r})
            for r in ("deadlock", "serialization_failure")
        )
        > before
    )


@pytest.mark.parametrize("db_config", [POSTGRES], indirect=True)
def test_postgres_reconnects_after_losing_connection(
    db_config: DatabaseConfig, run_sync: RunSync
) -> None:
    config = DatabaseConfig("psycopg2", {**db_config.args, "cp_min": 1, "cp_max": 1})
    labels = {"desc": "after_kill", "reason": "connection_lost"}
    retries_before = _sample("hearth_db_transaction_retries_total", labels)

    async def open_and_use() -> Database:
        db = create_database(config)
        await db.execute("before_kill", "SELECT 1")
        return db

    db: Database = run_sync(open_and_use())
    try:
        # Terminate the pool's one connection from outside; the pool only finds out when
        # it next uses it.
        admin = psycopg2.connect(**{k: v for k, v in config.args.items() if "cp_" not in k})
        admin.autocommit = True
        admin.cursor().execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        admin.close()
        time.sleep(0.1)
        assert run_sync(db.execute("after_kill", "SELECT 42")) == [(42,)]
    finally:
        run_sync(db.close())
    assert _sample("hearth_db_transaction_retries_total", labels) == retries_before + 1
