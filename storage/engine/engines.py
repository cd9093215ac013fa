"""What differs between SQLite and PostgreSQL: connecting, starting a transaction, and which
errors mean "run it again"."""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

# RETURNING arrived in 3.35; store code relies on it on both engines.
MIN_SQLITE_VERSION = (3, 35, 0)
MIN_POSTGRES_VERSION = 110000

# SQLite's primary result code for "another connection holds the lock".
_SQLITE_BUSY = 5

_PG_RETRYABLE = {"40001": "serialization_failure", "40P01": "deadlock"}


class EngineError(Exception):
    """The database configuration or server cannot be used."""


def _driver_args(args: Mapping[str, Any]) -> dict[str, Any]:
    # cp_* are the connection pool's own settings (Synapse's convention), not the driver's.
    return {k: v for k, v in args.items() if not k.startswith("cp_")}


class Engine:
    name: str
    pool_min: int
    pool_max: int

    def __init__(self, args: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def connect(self) -> Any:
        raise NotImplementedError

    def begin(self, conn: Any) -> None:
        raise NotImplementedError

    def retry_reason(self, exc: BaseException) -> str | None:
        """Why ``exc`` means the transaction may succeed if run again; None if it won't."""
        raise NotImplementedError

    def is_dead(self, conn: Any) -> bool:
        raise NotImplementedError


class SqliteEngine(Engine):
    name = "sqlite3"
    # One connection on one thread. SQLite admits a single writer at a time whatever we do,
    # and the API has no read-only transactions, so more connections would only race for
    # the write lock: a DEFERRED transaction that reads and then writes fails outright with
    # SQLITE_BUSY (the busy timeout cannot help once its snapshot is stale), and retrying that
    # costs more than queueing. One connection serialises our own transactions in Python.
    pool_min = 1
    pool_max = 1

    def __init__(self, args: Mapping[str, Any]) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
            raise EngineError(
                f"SQLite {sqlite3.sqlite_version} is too old; Hearth needs "
                f"{'.'.join(map(str, MIN_SQLITE_VERSION))} or newer"
            )
        driver_args = _driver_args(args)
        if "database" not in driver_args:
            raise EngineError("database.args.database (the SQLite file path) is required")
        self._path = str(driver_args.pop("database"))
        self._extra = driver_args

    def connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN ourselves, so the driver never opens or commits
        # a transaction on its own. check_same_thread=False only so close() can close the
        # connection after the pool thread that owned it has exited.
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, **self._extra
        )
        conn.execute("PRAGMA journal_mode=WAL")
        # Under WAL, NORMAL loses at most the last transactions on power loss, never integrity.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def begin(self, conn: Any) -> None:
        # IMMEDIATE takes the write lock now, where the busy timeout applies, instead of at the
        # first write, where a lock held by another process (an admin's sqlite3 shell, a second
        # Hearth) fails at once. Readers in other processes are not blocked under WAL.
        conn.execute("BEGIN IMMEDIATE")

    def retry_reason(self, exc: BaseException) -> str | None:
        if not isinstance(exc, sqlite3.OperationalError):
            return None
        code = getattr(exc, "sqlite_errorcode", None)
        if (code is not None and code & 0xFF == _SQLITE_BUSY) or "database is locked" in str(exc):
            return "database_locked"
        return None

    def is_dead(self, conn: Any) -> bool:
        return False


class PostgresEngine(Engine):
    name = "psycopg2"

    def __init__(self, args: Mapping[str, Any]) -> None:
        import psycopg2  # noqa: F401  (fail at start, not at the first query, if it is missing)

        self.pool_min = int(args.get("cp_min", 5))
        self.pool_max = int(args.get("cp_max", 10))
        if not 1 <= self.pool_min <= self.pool_max:
            raise EngineError(
                f"database.args: need 1 <= cp_min <= cp_max, got {self.pool_min}, {self.pool_max}"
            )
        self._connect_args = _driver_args(args)
        if "database" in self._connect_args and "dbname" in self._connect_args:
            raise EngineError("database.args: give either 'database' or 'dbname', not both")

    def connect(self) -> Any:
        import psycopg2
        import psycopg2.extensions as ext

        conn = psycopg2.connect(**self._connect_args)
        if conn.server_version < MIN_POSTGRES_VERSION:
            version = conn.server_version
            conn.close()
            raise EngineError(f"PostgreSQL server version {version} is too old; Hearth needs 11+")
        # REPEATABLE READ as Synapse does: a transaction sees one snapshot, and a write that
        # races another raises serialization_failure, which we retry, instead of silently
        # acting on rows that changed under it.
        conn.set_session(isolation_level=ext.ISOLATION_LEVEL_REPEATABLE_READ, autocommit=False)
        conn.set_client_encoding("UTF8")
        # bytea comes back as memoryview by default; SQLite gives bytes. Store code should not
        # have to care which engine it runs on.
        ext.register_type(_bytea_as_bytes(), conn)
        # JIT compilation pays off for long analytical queries, never for ours: a recursive
        # state-group read whose row estimate is wildly high spent ~230 ms compiling a plan
        # that runs in ~7 ms.
        with conn.cursor() as cursor:
            cursor.execute("SET jit = off")
        conn.commit()
        return conn

    def begin(self, conn: Any) -> None:
        # psycopg2 opens the transaction itself on the first statement.
        pass

    def retry_reason(self, exc: BaseException) -> str | None:
        return _PG_RETRYABLE.get(getattr(exc, "pgcode", None) or "")

    def is_dead(self, conn: Any) -> bool:
        return bool(conn.closed)


@functools.cache
def _bytea_as_bytes() -> Any:
    import psycopg2
    import psycopg2.extensions as ext

    def cast(value: str | None, cur: Any) -> bytes | None:
        if value is None:
            return None
        return bytes(psycopg2.BINARY(value, cur))

    return ext.new_type(psycopg2.BINARY.values, "HEARTH_BYTEA", cast)
