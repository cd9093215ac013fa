"""Server-side key backups: versions (an algorithm and its public auth data) and the
encrypted room keys stored in them. The server only compares the keys' metadata."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.engine import Cursor, Database

JsonDict = dict[str, Any]


class UnknownBackupVersion(Exception):
    pass


class WrongBackupVersion(Exception):
    """Keys may only be added to the current (newest) backup version."""

    def __init__(self, current_version: str | None) -> None:
        super().__init__(current_version)
        self.current_version = current_version


@dataclass(frozen=True)
class BackupVersion:
    version: str
    algorithm: str
    auth_data: JsonDict
    etag: str
    count: int


@dataclass(frozen=True)
class RoomKey:
    room_id: str
    session_id: str
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: JsonDict

    def to_json(self) -> JsonDict:
        return {
            "first_message_index": self.first_message_index,
            "forwarded_count": self.forwarded_count,
            "is_verified": self.is_verified,
            "session_data": self.session_data,
        }

    def rank(self) -> tuple[bool, int, int]:
        """Lower is better: verified first, then the lowest first message index, then
        the fewest forwards (the spec's rule for which of two keys to keep)."""
        return (not self.is_verified, self.first_message_index, self.forwarded_count)


def _parse_version(version: str) -> int | None:
    # Versions are decimal integers; anything else cannot name a backup.
    if not version.isdigit() or len(version) > 18:
        return None
    return int(version)


def _current_version_txn(cursor: Cursor, user_id: str) -> int | None:
    cursor.execute(
        "SELECT MAX(version) FROM e2e_room_keys_versions WHERE user_id = ? AND NOT deleted",
        (user_id,),
    )
    row = cursor.fetchone()
    return int(row[0]) if row is not None and row[0] is not None else None


def _version_txn(cursor: Cursor, user_id: str, version: int) -> BackupVersion | None:
    cursor.execute(
        "SELECT algorithm, auth_data, etag FROM e2e_room_keys_versions"
        " WHERE user_id = ? AND version = ? AND NOT deleted",
        (user_id, version),
    )
    row = cursor.fetchone()
    if row is None:
        return None
    cursor.execute(
        "SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = ? AND version = ?",
        (user_id, version),
    )
    count_row = cursor.fetchone()
    count = int(count_row[0]) if count_row else 0
    return BackupVersion(str(version), row[0], json.loads(row[1]), str(row[2]), count)


def _etag_and_count_txn(cursor: Cursor, user_id: str, version: int, bump: bool) -> tuple[str, int]:
    if bump:
        cursor.execute(
            "UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?",
            (user_id, version),
        )
    info = _version_txn(cursor, user_id, version)
    assert info is not None
    return info.etag, info.count


class KeyBackupStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- versions --------------------------------------------------------------------------

    async def create_version(self, user_id: str, algorithm: str, auth_data: JsonDict) -> str:
        def txn(cursor: Cursor) -> str:
            # Deleted versions keep their numbers: a new backup never reuses one.
            cursor.execute(
                "SELECT COALESCE(MAX(version), 0) FROM e2e_room_keys_versions WHERE user_id = ?",
                (user_id,),
            )
            row = cursor.fetchone()
            version = (int(row[0]) if row else 0) + 1
            cursor.execute(
                "INSERT INTO e2e_room_keys_versions (user_id, version, algorithm, auth_data)"
                " VALUES (?, ?, ?, ?)",
                (user_id, version, algorithm, json.dumps(auth_data)),
            )
            return str(version)

        return await self.db.run_interaction("create_backup_version", txn)

    async def get_version(self, user_id: str, version: str | None) -> BackupVersion | None:
        """A live version, or the current one when ``version`` is None."""

        def txn(cursor: Cursor) -> BackupVersion | None:
            number = (
                _current_version_txn(cursor, user_id)
                if version is None
                else _parse_version(version)
            )
            return None if number is None else _version_txn(cursor, user_id, number)

        return await self.db.run_interaction("get_backup_version", txn)

    async def update_version(
        self, user_id: str, version: str, algorithm: str, auth_data: JsonDict
    ) -> None:
        """Replace the auth data. Raises UnknownBackupVersion, or ValueError if the
        algorithm differs from the version's."""
        number = _parse_version(version)

        def txn(cursor: Cursor) -> None:
            info = None if number is None else _version_txn(cursor, user_id, number)
            if info is None:
                raise UnknownBackupVersion()
            if info.algorithm != algorithm:
                raise ValueError("Algorithm does not match")
            cursor.execute(
                "UPDATE e2e_room_keys_versions SET auth_data = ? WHERE user_id = ? AND version = ?",
                (json.dumps(auth_data), user_id, number),
            )

        await self.db.run_interaction("update_backup_version", txn)

    async def delete_version(self, user_id: str, version: str) -> bool:
        """Delete a version and its keys; False if it never existed (deleting it again
        is not an error)."""
        number = _parse_version(version)

        def txn(cursor: Cursor) -> bool:
            cursor.execute(
                "UPDATE e2e_room_keys_versions SET deleted = TRUE"
                " WHERE user_id = ? AND version = ?",
                (user_id, number),
            )
            if cursor.rowcount == 0:
                return False
            cursor.execute(
                "DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?", (user_id, number)
            )
            return True

        if number is None:
            return False
        return await self.db.run_interaction("delete_backup_version", txn)

    # --- keys ------------------------------------------------------------------------------

    async def put_keys(
        self, user_id: str, version: str, keys: Sequence[RoomKey]
    ) -> tuple[str, int]:
        """Store the keys that are better than what the backup holds (the spec's rule);
        the backup's etag (changed if any key was stored) and key count.

        Raises UnknownBackupVersion, or WrongBackupVersion if it is not the current one.
        """
        number = _parse_version(version)

        def txn(cursor: Cursor) -> tuple[str, int]:
            if number is None or _version_txn(cursor, user_id, number) is None:
                raise UnknownBackupVersion()
            current = _current_version_txn(cursor, user_id)
            if current != number:
                raise WrongBackupVersion(None if current is None else str(current))
            existing: dict[tuple[str, str], RoomKey] = {}
            for room_id in sorted({k.room_id for k in keys}):
                existing.update(
                    ((k.room_id, k.session_id), k)
                    for k in _get_keys_txn(cursor, user_id, number, room_id, None)
                )
            best: dict[tuple[str, str], RoomKey] = {}
            for key in keys:
                pair = (key.room_id, key.session_id)
                old = best.get(pair) or existing.get(pair)
                if old is None or key.rank() < old.rank():
                    best[pair] = key
            cursor.execute_batch(
                "INSERT INTO e2e_room_keys (user_id, version, room_id, session_id,"
                " first_message_index, forwarded_count, is_verified, session_data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET"
                " first_message_index = excluded.first_message_index,"
                " forwarded_count = excluded.forwarded_count,"
                " is_verified = excluded.is_verified, session_data = excluded.session_data",
                [
                    (
                        user_id,
                        number,
                        k.room_id,
                        k.session_id,
                        k.first_message_index,
                        k.forwarded_count,
                        k.is_verified,
                        json.dumps(k.session_data),
                    )
                    for k in best.values()
                ],
            )
            return _etag_and_count_txn(cursor, user_id, number, bool(best))

        return await self.db.run_interaction("put_room_keys", txn)

    async def get_keys(
        self, user_id: str, version: str, room_id: str | None, session_id: str | None
    ) -> list[RoomKey]:
        """Raises UnknownBackupVersion."""
        number = _parse_version(version)

        def txn(cursor: Cursor) -> list[RoomKey]:
            if number is None or _version_txn(cursor, user_id, number) is None:
                raise UnknownBackupVersion()
            return _get_keys_txn(cursor, user_id, number, room_id, session_id)

        return await self.db.run_interaction("get_room_keys", txn)

    async def delete_keys(
        self, user_id: str, version: str, room_id: str | None, session_id: str | None
    ) -> tuple[str, int]:
        """Raises UnknownBackupVersion."""
        number = _parse_version(version)

        def txn(cursor: Cursor) -> tuple[str, int]:
            if number is None or _version_txn(cursor, user_id, number) is None:
                raise UnknownBackupVersion()
            where, args = _key_filter(user_id, number, room_id, session_id)
            cursor.execute(f"DELETE FROM e2e_room_keys WHERE {where}", args)
            return _etag_and_count_txn(cursor, user_id, number, cursor.rowcount > 0)

        return await self.db.run_interaction("delete_room_keys", txn)


def _key_filter(
    user_id: str, version: int, room_id: str | None, session_id: str | None
) -> tuple[str, tuple[Any, ...]]:
    where = "user_id = ? AND version = ?"
    args: tuple[Any, ...] = (user_id, version)
    if room_id is not None:
        where += " AND room_id = ?"
        args += (room_id,)
        if session_id is not None:
            where += " AND session_id = ?"
            args += (session_id,)
    return where, args


def _get_keys_txn(
    cursor: Cursor, user_id: str, version: int, room_id: str | None, session_id: str | None
) -> list[RoomKey]:
    where, args = _key_filter(user_id, version, room_id, session_id)
    cursor.execute(
        "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified,"
        f" session_data FROM e2e_room_keys WHERE {where} ORDER BY room_id, session_id",
        args,
    )
    return [
        RoomKey(r[0], r[1], int(r[2]), int(r[3]), bool(r[4]), json.loads(r[5]))
        for r in cursor.fetchall()
    ]
