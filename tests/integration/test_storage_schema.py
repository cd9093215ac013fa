"""Migrations, on real SQLite and real PostgreSQL."""

from __future__ import annotations

import itertools
import secrets
import sqlite3
import sys
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from storage.engine import Database, DatabaseConfig, create_database
from storage.schema import SchemaError, migrations, prepare_database

# Migrations and the engine itself are tested on empty databases.
pytestmark = pytest.mark.empty_database


RunSync = Callable[..., Any]

_INITIAL = resources.files("storage.schema").joinpath("0001_initial.sql").read_text("utf-8")
_counter = itertools.count()


@pytest.fixture
def bare_database(db_config: DatabaseConfig, run_sync: RunSync) -> Iterator[Database]:
    """A Database on an empty, unprepared database."""
    db: Database = run_sync(lambda: create_database(db_config))
    try:
        yield db
    finally:
        run_sync(db.close())


@pytest.fixture
def make_package(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], str]]:
    """Writes a throwaway migrations package; returns its importable name."""
    sys.path.insert(0, str(tmp_path))
    names: list[str] = []

    def make(files: dict[str, str]) -> str:
        name = f"hearth_test_migrations_{secrets.token_hex(4)}_{next(_counter)}"
        package = tmp_path / name
        package.mkdir()
        (package / "__init__.py").write_text("")
        for filename, text in files.items():
            (package / filename).write_text(text)
        names.append(name)
        return name

    yield make
    sys.path.remove(str(tmp_path))
    for name in names:
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]


def _recorded(db: Database, run_sync: RunSync) -> list[tuple[Any, ...]]:
    return run_sync(
        db.execute("recorded", "SELECT version, name, applied_ts FROM schema_version ORDER BY 1")
    )


def _tables(db: Database, run_sync: RunSync) -> set[str]:
    if db.engine_name == "sqlite3":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    return {row[0] for row in run_sync(db.execute("tables", sql))}


def test_shipped_migrations_are_numbered_from_one() -> None:
    shipped = migrations()
    assert [m.version for m in shipped] == list(range(1, len(shipped) + 1))
    assert shipped[0].filename == "0001_initial.sql"


def test_prepare_applies_everything_once(bare_database: Database, run_sync: RunSync) -> None:
    newest = migrations()[-1].version
    assert run_sync(prepare_database(bare_database)) == newest
    first = _recorded(bare_database, run_sync)
    assert [(v, n) for v, n, _ in first] == [(m.version, m.name) for m in migrations()]
    assert all(isinstance(ts, int) and ts > 1_600_000_000_000 for _, _, ts in first)

    # Idempotent: nothing is applied or recorded again.
    assert run_sync(prepare_database(bare_database)) == newest
    assert _recorded(bare_database, run_sync) == first


def test_prepare_survives_a_restart(
    db_config: DatabaseConfig, bare_database: Database, run_sync: RunSync
) -> None:
    version = run_sync(prepare_database(bare_database))

    async def again() -> int:
        db = create_database(db_config)
        try:
            return await prepare_database(db)
        finally:
            await db.close()

    assert run_sync(again()) == version
    assert len(_recorded(bare_database, run_sync)) == version


def test_newer_schema_is_refused(bare_database: Database, run_sync: RunSync) -> None:
    newest = run_sync(prepare_database(bare_database))
    run_sync(
        bare_database.execute(
            "future",
            "INSERT INTO schema_version (version, name, applied_ts) VALUES (?, ?, ?)",
            newest + 2,
            "from_the_future",
            0,
        )
    )
    with pytest.raises(SchemaError) as info:
        run_sync(prepare_database(bare_database))
    assert str(info.value) == (
        f"database schema version {newest + 2} is newer than this Hearth knows ({newest}); "
        "upgrade Hearth"
    )


def test_sql_and_python_migrations_in_order(
    bare_database: Database, run_sync: RunSync, make_package: Callable[[dict[str, str]], str]
) -> None:
    package = make_package(
        {
            "0001_initial.sql": _INITIAL,
            "0002_rooms.sql": """
                -- a comment; with a semicolon
                CREATE TABLE rooms (room_id TEXT NOT NULL PRIMARY KEY, note TEXT);
                INSERT INTO rooms VALUES ('!a:x', 'semi; colon ''quoted'' 100%');
            """,
            "0003_engine_specific.py": (
                "def run(cursor):\n"
                "    kind = 'BYTEA' if cursor.engine_name == 'psycopg2' else 'BLOB'\n"
                "    cursor.execute(f'CREATE TABLE blobs (b {kind})')\n"
                "    cursor.execute('INSERT INTO blobs VALUES (?)', (b'\\x00\\x01',))\n"
            ),
            "README.txt": "not a migration",
        }
    )
    assert run_sync(prepare_database(bare_database, package=package)) == 3
    assert [(v, n) for v, n, _ in _recorded(bare_database, run_sync)] == [
        (1, "initial"),
        (2, "rooms"),
        (3, "engine_specific"),
    ]
    assert run_sync(bare_database.execute("r", "SELECT room_id, note FROM rooms")) == [
        ("!a:x", "semi; colon 'quoted' 100%")
    ]
    assert run_sync(bare_database.execute("b", "SELECT b FROM blobs")) == [(b"\x00\x01",)]


def test_failing_migration_leaves_previous_version(
    bare_database: Database, run_sync: RunSync, make_package: Callable[[dict[str, str]], str]
) -> None:
    good = {
        "0001_initial.sql": _INITIAL,
        "0002_rooms.sql": "CREATE TABLE rooms (room_id TEXT PRIMARY KEY)",
    }
    broken = make_package(
        {
            **good,
            "0003_broken.sql": (
                "CREATE TABLE half (x INTEGER); INSERT INTO no_such_table VALUES (1);"
            ),
        }
    )
    with pytest.raises((sqlite3.OperationalError, psycopg2.ProgrammingError)):
        run_sync(prepare_database(bare_database, package=broken))
    assert [v for v, _, _ in _recorded(bare_database, run_sync)] == [1, 2]
    # The first statement of the failed migration was rolled back with it.
    assert "half" not in _tables(bare_database, run_sync)
    assert "rooms" in _tables(bare_database, run_sync)

    fixed = make_package({**good, "0003_broken.sql": "CREATE TABLE half (x INTEGER)"})
    assert run_sync(prepare_database(bare_database, package=fixed)) == 3
    assert "half" in _tables(bare_database, run_sync)


def test_duplicate_migration_numbers_are_refused(
    bare_database: Database, run_sync: RunSync, make_package: Callable[[dict[str, str]], str]
) -> None:
    package = make_package(
        {
            "0001_initial.sql": _INITIAL,
            "0002_a.sql": "CREATE TABLE a (x INTEGER)",
            "0002_b.sql": "CREATE TABLE b (x INTEGER)",
        }
    )
    with pytest.raises(SchemaError, match="two migrations numbered 2"):
        run_sync(prepare_database(bare_database, package=package))
    assert "schema_version" not in _tables(bare_database, run_sync)


def test_two_servers_preparing_at_once_apply_each_migration_once(
    db_config: DatabaseConfig,
    bare_database: Database,
    run_sync: RunSync,
    make_package: Callable[[dict[str, str]], str],
) -> None:
    old = make_package({"0001_initial.sql": _INITIAL})
    run_sync(prepare_database(bare_database, package=old))
    new = make_package(
        {
            "0001_initial.sql": _INITIAL,
            "0002_a.sql": "CREATE TABLE a (x INTEGER)",
            "0003_b.sql": "CREATE TABLE b (x INTEGER)",
        }
    )

    async def race() -> list[int]:
        from twisted.internet.defer import Deferred, gatherResults

        other = create_database(db_config)
        try:
            return await gatherResults(
                [
                    Deferred.fromCoroutine(prepare_database(bare_database, package=new)),
                    Deferred.fromCoroutine(prepare_database(other, package=new)),
                ],
                consumeErrors=True,
            )
        finally:
            await other.close()

    assert run_sync(race()) == [3, 3]
    assert [v for v, _, _ in _recorded(bare_database, run_sync)] == [1, 2, 3]
