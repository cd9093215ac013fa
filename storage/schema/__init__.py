"""The database schema: numbered migrations, applied in order at start.

A migration is a file in this package named ``NNNN_description.sql`` or ``NNNN_description.py``
(a module with ``run(cursor: Cursor) -> None``, for the rare change that must differ between
the engines: branch on ``cursor.engine_name``). SQL must run on both SQLite and PostgreSQL.
Never edit a migration that has shipped; add the next number.

Each migration runs in its own transaction together with its row in ``schema_version``, so a
failure leaves the database at the previous version, never half-migrated.
"""

from __future__ import annotations

import importlib
import logging
import re
import time
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from storage.engine import Cursor, Database
from storage.engine.sql import split_statements

logger = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sql|py)$")


class SchemaError(Exception):
    """The database's schema cannot be used by this Hearth."""


@dataclass(frozen=True)
class Migration:
    package: str
    version: int
    name: str
    kind: Literal["sql", "py"]

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.{self.kind}"

    def apply(self, cursor: Cursor) -> None:
        if self.kind == "sql":
            script = resources.files(self.package).joinpath(self.filename).read_text("utf-8")
            for statement in split_statements(script):
                cursor.execute(statement)
        else:
            module = importlib.import_module(f"{self.package}.{self.filename[:-3]}")
            module.run(cursor)


def migrations(package: str = __name__) -> list[Migration]:
    """Every migration in ``package``, in order."""
    found: dict[int, Migration] = {}
    for entry in resources.files(package).iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        kind: Literal["sql", "py"] = "sql" if match[3] == "sql" else "py"
        migration = Migration(package, int(match[1]), match[2], kind)
        if migration.version in found:
            raise SchemaError(
                f"two migrations numbered {migration.version}: "
                f"{found[migration.version].filename} and {migration.filename}"
            )
        found[migration.version] = migration
    return [found[v] for v in sorted(found)]


def _has_schema_version_table(cursor: Cursor) -> bool:
    if cursor.engine_name == "sqlite3":
        cursor.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        )
    else:
        cursor.execute(
            "SELECT 1 FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name = 'schema_version'"
        )
    return cursor.fetchone() is not None


def _applied_versions(cursor: Cursor) -> dict[int, str]:
    if not _has_schema_version_table(cursor):
        return {}
    cursor.execute("SELECT version, name FROM schema_version")
    return {int(version): str(name) for version, name in cursor.fetchall()}


def _apply_one(cursor: Cursor, migration: Migration, table_exists: bool) -> bool:
    """Apply ``migration`` unless it already is; whether it was applied now."""
    if table_exists and cursor.engine_name == "psycopg2":
        # Two Hearths starting together must not both apply a migration. This must be the
        # first statement: LOCK takes no snapshot, so the REPEATABLE READ snapshot taken by the
        # next SELECT sees whatever the other one committed while we waited. On SQLite,
        # BEGIN IMMEDIATE already serialises. (Creating schema_version itself cannot be
        # guarded like this; a race there fails one of the two with "already exists".)
        cursor.execute("LOCK TABLE schema_version IN SHARE ROW EXCLUSIVE MODE")
    if migration.version in _applied_versions(cursor):
        return False
    migration.apply(cursor)
    cursor.execute(
        "INSERT INTO schema_version (version, name, applied_ts) VALUES (?, ?, ?)",
        (migration.version, migration.name, int(time.time() * 1000)),
    )
    return True


async def prepare_database(db: Database, *, package: str = __name__) -> int:
    """Bring the schema up to date; the schema version the database is now at.

    Raises SchemaError if the database was written by a newer Hearth. ``package`` holds the
    migrations; only tests pass another.
    """
    known = migrations(package)
    newest_known = known[-1].version if known else 0
    applied = await db.run_interaction("prepare_database_versions", _applied_versions)
    if applied and max(applied) > newest_known:
        raise SchemaError(
            f"database schema version {max(applied)} is newer than this Hearth knows "
            f"({newest_known}); upgrade Hearth"
        )
    for migration in known:
        recorded = applied.get(migration.version)
        if recorded is not None:
            if recorded != migration.name:
                logger.warning(
                    "schema version %d is recorded as %r but this Hearth ships %s",
                    migration.version,
                    recorded,
                    migration.filename,
                )
            continue
        # The first migration creates schema_version.
        table_exists = bool(applied) or migration.version > known[0].version
        if await db.run_interaction(
            "prepare_database_migrate", _apply_one, migration, table_exists
        ):
            logger.info("applied schema migration %s", migration.filename)
    return max([*applied, *(m.version for m in known)], default=0)
