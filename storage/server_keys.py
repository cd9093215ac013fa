"""Other servers' signing keys, as the keyring fetched and verified them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from storage.engine import Cursor, Database

# Keeps each IN (...) list well under SQLite's host-parameter limit.
_IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class StoredServerKey:
    server_name: str
    key_id: str
    verify_key: str  # unpadded base64
    valid_until_ts: int  # effective: capped at fetch + 7 days, or an old key's expired_ts
    fetched_ts: int
    from_server: str
    key_json: str  # the owner-signed key document
    document_valid_until_ts: int


_COLUMNS = (
    "server_name, key_id, verify_key, valid_until_ts, fetched_ts, from_server, key_json,"
    " document_valid_until_ts"
)


class ServerKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def store_keys(self, keys: Sequence[StoredServerKey]) -> None:
        """Record keys from one or more fetched documents; the newest fetch of a key wins."""
        if not keys:
            return

        def store(cursor: Cursor) -> None:
            cursor.execute_batch(
                f"INSERT INTO server_signature_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (server_name, key_id) DO UPDATE SET"
                " verify_key = excluded.verify_key,"
                " valid_until_ts = excluded.valid_until_ts,"
                " fetched_ts = excluded.fetched_ts,"
                " from_server = excluded.from_server,"
                " key_json = excluded.key_json,"
                " document_valid_until_ts = excluded.document_valid_until_ts"
                " WHERE excluded.fetched_ts >= server_signature_keys.fetched_ts",
                [
                    (
                        k.server_name,
                        k.key_id,
                        k.verify_key,
                        k.valid_until_ts,
                        k.fetched_ts,
                        k.from_server,
                        k.key_json,
                        k.document_valid_until_ts,
                    )
                    for k in keys
                ],
            )

        await self.db.run_interaction("store_server_keys", store)

    async def get_keys(self, server_names: Collection[str]) -> list[StoredServerKey]:
        """Every key stored for these servers."""
        names = sorted(set(server_names))
        if not names:
            return []

        def select(cursor: Cursor) -> list[StoredServerKey]:
            found: list[StoredServerKey] = []
            for start in range(0, len(names), _IN_CHUNK):
                chunk = names[start : start + _IN_CHUNK]
                placeholders = ", ".join("?" for _ in chunk)
                cursor.execute(
                    f"SELECT {_COLUMNS} FROM server_signature_keys"
                    f" WHERE server_name IN ({placeholders})",
                    chunk,
                )
                found.extend(StoredServerKey(*row) for row in cursor.fetchall())
            return found

        result: list[StoredServerKey] = await self.db.run_interaction("get_server_keys", select)
        return result
