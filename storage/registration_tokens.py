"""Registration tokens (Synapse's ``registration_tokens``), as the admin API manages them."""

from __future__ import annotations

from dataclasses import dataclass

from storage.engine import Cursor, Database


@dataclass(frozen=True)
class RegistrationToken:
    token: str
    uses_allowed: int | None
    completed: int
    expiry_time: int | None


class RegistrationTokenUnusable(Exception):
    """The token is unknown, expired or used up."""


def consume_token_txn(cursor: Cursor, token: str, now_ms: int) -> None:
    """Count one completed registration with ``token``, if it still allows one.

    One conditional UPDATE, so two registrations racing for the last use cannot both win.
    """
    cursor.execute(
        "UPDATE registration_tokens SET completed = completed + 1"
        " WHERE token = ? AND (uses_allowed IS NULL OR completed < uses_allowed)"
        " AND (expiry_time IS NULL OR expiry_time > ?)",
        (token, now_ms),
    )
    if cursor.rowcount == 0:
        raise RegistrationTokenUnusable(token)


_COLUMNS = "token, uses_allowed, completed, expiry_time"


class RegistrationTokenStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def get(self, token: str) -> RegistrationToken | None:
        rows = await self._db.execute(
            "get_registration_token",
            f"SELECT {_COLUMNS} FROM registration_tokens WHERE token = ?",
            token,
        )
        return RegistrationToken(*rows[0]) if rows else None

    async def list(self) -> list[RegistrationToken]:
        rows = await self._db.execute(
            "list_registration_tokens", f"SELECT {_COLUMNS} FROM registration_tokens ORDER BY token"
        )
        return [RegistrationToken(*row) for row in rows]

    async def create(self, token: str, uses_allowed: int | None, expiry_time: int | None) -> bool:
        """Create a token; False if it already exists."""

        def insert(cursor: Cursor) -> bool:
            cursor.execute(
                "INSERT INTO registration_tokens (token, uses_allowed, expiry_time)"
                " VALUES (?, ?, ?) ON CONFLICT (token) DO NOTHING",
                (token, uses_allowed, expiry_time),
            )
            return cursor.rowcount > 0

        return await self._db.run_interaction("create_registration_token", insert)

    async def update(self, token: str, changes: dict[str, int | None]) -> RegistrationToken | None:
        """Set ``uses_allowed`` and/or ``expiry_time``; the token after, None if unknown."""

        def apply(cursor: Cursor) -> RegistrationToken | None:
            for column in ("uses_allowed", "expiry_time"):
                if column in changes:
                    cursor.execute(
                        f"UPDATE registration_tokens SET {column} = ? WHERE token = ?",
                        (changes[column], token),
                    )
            cursor.execute(f"SELECT {_COLUMNS} FROM registration_tokens WHERE token = ?", (token,))
            row = cursor.fetchone()
            return RegistrationToken(*row) if row else None

        return await self._db.run_interaction("update_registration_token", apply)

    async def delete(self, token: str) -> bool:
        def delete(cursor: Cursor) -> bool:
            cursor.execute("DELETE FROM registration_tokens WHERE token = ?", (token,))
            return cursor.rowcount > 0

        return await self._db.run_interaction("delete_registration_token", delete)
