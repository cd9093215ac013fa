"""Other servers' users' device lists and cross-signing keys (migration 0014), as their
servers told us.

Every write is also a change on the "device_lists" stream, in the same transaction, so a
local user's /sync that sees the position lists the remote user in ``device_lists.changed``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from storage.device_lists import Change, DeviceListStore
from storage.engine import Cursor, Database

JsonDict = dict[str, Any]
_CHUNK = 500


@dataclass
class CachedDeviceList:
    """A remote user's devices (device ID -> keys, or None) and cross-signing keys."""

    devices: dict[str, JsonDict | None] = field(default_factory=dict)
    cross_signing: dict[str, JsonDict] = field(default_factory=dict)


def _dump(value: JsonDict) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _set_position_txn(cursor: Cursor, user_id: str, stream_id: int) -> None:
    cursor.execute(
        "INSERT INTO remote_device_list_positions (user_id, stream_id) VALUES (?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id",
        (user_id, stream_id),
    )


def _set_cross_signing_txn(cursor: Cursor, user_id: str, keys: Mapping[str, JsonDict]) -> None:
    cursor.execute_batch(
        "INSERT INTO remote_cross_signing_keys (user_id, key_type, key_json) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json",
        [(user_id, key_type, _dump(key)) for key_type, key in keys.items()],
    )


class RemoteDeviceStore:
    def __init__(self, db: Database, device_lists: DeviceListStore) -> None:
        self.db = db
        self.device_lists = device_lists

    async def get_position(self, user_id: str) -> int | None:
        """The stream_id of the last update applied for the user; None: not tracked."""
        rows = await self.db.execute(
            "remote_device_list_position",
            "SELECT stream_id FROM remote_device_list_positions WHERE user_id = ?",
            user_id,
        )
        return int(rows[0][0]) if rows else None

    async def apply_update(
        self,
        user_id: str,
        device_id: str,
        stream_id: int,
        keys: JsonDict | None,
        deleted: bool,
    ) -> int | None:
        """One device's update, the next link of the user's chain. The stream position."""

        def txn(cursor: Cursor) -> tuple[None, Collection[Change]]:
            if deleted:
                cursor.execute(
                    "DELETE FROM remote_device_keys WHERE user_id = ? AND device_id = ?",
                    (user_id, device_id),
                )
            else:
                cursor.execute(
                    "INSERT INTO remote_device_keys (user_id, device_id, key_json)"
                    " VALUES (?, ?, ?) ON CONFLICT (user_id, device_id)"
                    " DO UPDATE SET key_json = excluded.key_json",
                    (user_id, device_id, None if keys is None else _dump(keys)),
                )
            _set_position_txn(cursor, user_id, stream_id)
            return None, [(user_id, device_id)]

        _, position = await self.device_lists.run_changing("remote_device_list_update", txn)
        return position

    async def replace_all(
        self,
        user_id: str,
        stream_id: int,
        devices: Mapping[str, JsonDict | None],
        cross_signing: Mapping[str, JsonDict],
    ) -> int | None:
        """A full resync of the user's list (GET /user/devices). The stream position."""

        def txn(cursor: Cursor) -> tuple[None, Collection[Change]]:
            cursor.execute("DELETE FROM remote_device_keys WHERE user_id = ?", (user_id,))
            cursor.execute_batch(
                "INSERT INTO remote_device_keys (user_id, device_id, key_json) VALUES (?, ?, ?)",
                [
                    (user_id, device_id, None if keys is None else _dump(keys))
                    for device_id, keys in devices.items()
                ],
            )
            cursor.execute("DELETE FROM remote_cross_signing_keys WHERE user_id = ?", (user_id,))
            _set_cross_signing_txn(cursor, user_id, cross_signing)
            _set_position_txn(cursor, user_id, stream_id)
            return None, [(user_id, None)]

        _, position = await self.device_lists.run_changing("remote_device_list_resync", txn)
        return position

    async def set_cross_signing(self, user_id: str, keys: Mapping[str, JsonDict]) -> int | None:
        def txn(cursor: Cursor) -> tuple[None, Collection[Change]]:
            _set_cross_signing_txn(cursor, user_id, keys)
            return None, [(user_id, None)]

        _, position = await self.device_lists.run_changing("remote_signing_key_update", txn)
        return position

    async def forget(self, user_id: str) -> int | None:
        """Drop the user's cached list (it can no longer be trusted) as a change of theirs."""

        def txn(cursor: Cursor) -> tuple[None, Collection[Change]]:
            for table in (
                "remote_device_list_positions",
                "remote_device_keys",
                "remote_cross_signing_keys",
            ):
                cursor.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
            return None, [(user_id, None)]

        _, position = await self.device_lists.run_changing("remote_device_list_forget", txn)
        return position

    async def get_cached(self, user_ids: Collection[str]) -> dict[str, CachedDeviceList]:
        """The cached lists of the tracked users among ``user_ids``."""

        def txn(cursor: Cursor) -> dict[str, CachedDeviceList]:
            found: dict[str, CachedDeviceList] = defaultdict(CachedDeviceList)
            ordered = sorted(user_ids)
            for i in range(0, len(ordered), _CHUNK):
                chunk = ordered[i : i + _CHUNK]
                placeholders = ",".join("?" * len(chunk))
                cursor.execute(
                    "SELECT user_id FROM remote_device_list_positions"
                    f" WHERE user_id IN ({placeholders})",
                    tuple(chunk),
                )
                for (user_id,) in cursor.fetchall():
                    found[user_id] = CachedDeviceList()
                cursor.execute(
                    "SELECT user_id, device_id, key_json FROM remote_device_keys"
                    f" WHERE user_id IN ({placeholders})",
                    tuple(chunk),
                )
                for user_id, device_id, key_json in cursor.fetchall():
                    if user_id in found:
                        found[user_id].devices[device_id] = (
                            None if key_json is None else json.loads(key_json)
                        )
                cursor.execute(
                    "SELECT user_id, key_type, key_json FROM remote_cross_signing_keys"
                    f" WHERE user_id IN ({placeholders})",
                    tuple(chunk),
                )
                for user_id, key_type, key_json in cursor.fetchall():
                    if user_id in found:
                        found[user_id].cross_signing[key_type] = json.loads(key_json)
            return dict(found)

        if not user_ids:
            return {}
        return await self.db.run_interaction("remote_device_lists_cached", txn)

    async def get_local_device_list(self, user_id: str) -> tuple[int, list[tuple[str, str | None]]]:
        """For GET /user/devices: the user's latest device list position (0 if none) and
        their devices (device ID, keys JSON or None)."""

        def txn(cursor: Cursor) -> tuple[int, list[tuple[str, str | None]]]:
            cursor.execute(
                "SELECT COALESCE(MAX(stream_id), 0) FROM device_lists_stream WHERE user_id = ?",
                (user_id,),
            )
            row = cursor.fetchone()
            cursor.execute(
                "SELECT d.device_id, k.key_json FROM devices AS d LEFT JOIN e2e_device_keys AS k"
                " ON k.user_id = d.user_id AND k.device_id = d.device_id"
                " WHERE d.user_id = ? ORDER BY d.device_id",
                (user_id,),
            )
            return (int(row[0]) if row else 0), [(r[0], r[1]) for r in cursor.fetchall()]

        return await self.db.run_interaction("local_device_list", txn)

    async def get_latest_local_change(
        self, user_id: str
    ) -> tuple[int, int | None, list[str | None]] | None:
        """The user's latest change on the device_lists stream: (its position, the position
        of the change before it, the device IDs it concerned — None for cross-signing)."""

        def txn(cursor: Cursor) -> tuple[int, int | None, list[str | None]] | None:
            cursor.execute(
                "SELECT DISTINCT stream_id FROM device_lists_stream WHERE user_id = ?"
                " ORDER BY stream_id DESC LIMIT 2",
                (user_id,),
            )
            positions = [int(r[0]) for r in cursor.fetchall()]
            if not positions:
                return None
            cursor.execute(
                "SELECT device_id FROM device_lists_stream WHERE user_id = ? AND stream_id = ?",
                (user_id, positions[0]),
            )
            device_ids = sorted({r[0] for r in cursor.fetchall()}, key=lambda d: d or "")
            return positions[0], (positions[1] if len(positions) > 1 else None), device_ids

        return await self.db.run_interaction("latest_local_device_list_change", txn)
