"""Devices: a user's logged-in sessions, their names and when they were last seen."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from storage.engine import Cursor, Database


@dataclass(frozen=True)
class Device:
    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None
    last_seen_user_agent: str | None = None


@dataclass(frozen=True)
class LastSeen:
    ts: int
    ip: str
    user_agent: str | None


_COLUMNS = "user_id, device_id, display_name, last_seen_ts, last_seen_ip, last_seen_user_agent"


def ensure_device_txn(
    cursor: Cursor, user_id: str, device_id: str, display_name: str | None
) -> bool:
    """Create the device if the user has none by that ID; True if it was created.

    An existing device keeps its name, as Synapse does when a client logs in again with
    the same device ID.
    """
    cursor.execute(
        "INSERT INTO devices (user_id, device_id, display_name) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id, device_id) DO NOTHING",
        (user_id, device_id, display_name),
    )
    return cursor.rowcount > 0


def delete_devices_txn(cursor: Cursor, user_id: str, device_ids: Sequence[str]) -> None:
    """Delete devices (not their tokens: see ``AccountStore.delete_devices``)."""
    cursor.execute_batch(
        "DELETE FROM devices WHERE user_id = ? AND device_id = ?",
        [(user_id, device_id) for device_id in device_ids],
    )


def device_ids_txn(cursor: Cursor, user_id: str) -> list[str]:
    cursor.execute("SELECT device_id FROM devices WHERE user_id = ?", (user_id,))
    return [row[0] for row in cursor.fetchall()]


class DeviceStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def get_devices(self, user_id: str) -> list[Device]:
        rows = await self._db.execute(
            "get_devices",
            f"SELECT {_COLUMNS} FROM devices WHERE user_id = ? ORDER BY device_id",
            user_id,
        )
        return [Device(*row) for row in rows]

    async def get_device(self, user_id: str, device_id: str) -> Device | None:
        rows = await self._db.execute(
            "get_device",
            f"SELECT {_COLUMNS} FROM devices WHERE user_id = ? AND device_id = ?",
            user_id,
            device_id,
        )
        return Device(*rows[0]) if rows else None

    async def set_display_name(self, user_id: str, device_id: str, display_name: str) -> bool:
        """Rename a device; False if the user has no such device."""

        def update(cursor: Cursor) -> bool:
            cursor.execute(
                "UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
                (display_name, user_id, device_id),
            )
            return cursor.rowcount > 0

        return await self._db.run_interaction("set_device_display_name", update)

    async def store_last_seen(self, seen: Iterable[tuple[str, str, LastSeen]]) -> None:
        """Write a batch of (user_id, device_id, last seen) in one transaction."""
        rows = [(s.ts, s.ip, s.user_agent, user, device) for user, device, s in seen]
        if not rows:
            return

        def update(cursor: Cursor) -> None:
            cursor.execute_batch(
                "UPDATE devices SET last_seen_ts = ?, last_seen_ip = ?, last_seen_user_agent = ?"
                " WHERE user_id = ? AND device_id = ?",
                rows,
            )

        await self._db.run_interaction("store_device_last_seen", update)
