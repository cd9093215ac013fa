"""SQLite and PostgreSQL behind one small async API.

``create_database(DatabaseConfig(...))`` gives a :class:`Database`; store code hands it plain
functions of a :class:`Cursor` to run as transactions on a thread pool::

    def count_users(cursor: Cursor, server: str) -> int:
        cursor.execute("SELECT COUNT(*) FROM users WHERE name LIKE ?", (f"%:{server}",))
        row = cursor.fetchone()
        return row[0] if row else 0

    n = await db.run_interaction("count_users", count_users, "example.org")

All SQL uses ``?`` placeholders, on both engines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet.interfaces import IReactorThreads

from storage.engine.cursor import Cursor
from storage.engine.database import MAX_ATTEMPTS, Database, DatabaseClosedError
from storage.engine.engines import Engine, EngineError, PostgresEngine, SqliteEngine

__all__ = [
    "MAX_ATTEMPTS",
    "Cursor",
    "Database",
    "DatabaseClosedError",
    "DatabaseConfig",
    "EngineError",
    "create_database",
]

ENGINES: Mapping[str, type[Engine]] = {"sqlite3": SqliteEngine, "psycopg2": PostgresEngine}


@dataclass(frozen=True)
class DatabaseConfig:
    """The ``database:`` section of homeserver.yaml, with Synapse's key names.

    ``name`` is "sqlite3" or "psycopg2". ``args`` for sqlite3: ``database`` (the file path;
    other keys go to ``sqlite3.connect``, e.g. ``timeout``). For psycopg2: ``cp_min`` and
    ``cp_max`` size the pool, everything else (user, password, database or dbname, host,
    port, sslmode...) goes to libpq.
    """

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)


def create_database(config: DatabaseConfig, reactor: IReactorThreads | None = None) -> Database:
    """A Database for ``config``; its pool starts with the reactor (now, if it is running).

    Call on the reactor thread. ``reactor`` defaults to the global one; any other must be a
    full reactor (threads, core and time), as every real Twisted reactor is. Raises
    EngineError for an unusable configuration; nothing connects until the first transaction.
    """
    engine_class = ENGINES.get(config.name)
    if engine_class is None:
        raise EngineError(
            f"unknown database engine {config.name!r}: use one of {', '.join(sorted(ENGINES))}"
        )
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = cast(IReactorThreads, global_reactor)
    return Database(engine_class(config.args), reactor)
