"""Device keys, one-time and fallback keys, cross-signing keys and their signatures.

Uploads that change what other users see of a user's devices (device keys, cross-signing
keys, signatures) record a "device_lists" change in their own transaction. Claims take
each one-time key in the transaction that hands it out, so no key goes out twice.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storage.device_lists import Change, DeviceListStore, record_changes_txn
from storage.engine import Cursor, Database

JsonDict = dict[str, Any]
_CHUNK = 500


class IdentityKeysChanged(Exception):
    """A device tried to replace its identity keys."""


class OneTimeKeyConflict(Exception):
    """A one-time key ID was uploaded again with different content."""

    def __init__(self, key_id: str) -> None:
        super().__init__(key_id)
        self.key_id = key_id


@dataclass(frozen=True)
class NewKey:
    algorithm: str
    key_id: str  # the part after the colon
    key: Any  # a string or a signed object, as uploaded


@dataclass(frozen=True)
class StoredDeviceKeys:
    keys: JsonDict
    display_name: str | None


@dataclass(frozen=True)
class SignatureRow:
    target_user_id: str
    target_key_id: str
    signer_user_id: str
    signer_key_id: str
    signature: str


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def delete_device_keys_txn(cursor: Cursor, user_id: str, device_ids: Sequence[str]) -> None:
    """Forget every key of the devices, the signatures on them and their pending
    to-device messages (the device is being deleted)."""
    args = [(user_id, device_id) for device_id in device_ids]
    for table, column in (
        ("e2e_device_keys", "device_id"),
        ("e2e_one_time_keys", "device_id"),
        ("e2e_fallback_keys", "device_id"),
        ("device_inbox", "device_id"),
        ("e2e_cross_signing_signatures", "target_key_id"),
    ):
        user_column = "target_user_id" if table == "e2e_cross_signing_signatures" else "user_id"
        cursor.execute_batch(f"DELETE FROM {table} WHERE {user_column} = ? AND {column} = ?", args)


class E2EKeyStore:
    def __init__(self, db: Database, device_lists: DeviceListStore) -> None:
        self.db = db
        self.device_lists = device_lists

    # --- uploads ---------------------------------------------------------------------------

    async def upload(
        self,
        user_id: str,
        device_id: str,
        device_keys: JsonDict | None,
        one_time_keys: Sequence[NewKey],
        fallback_keys: Sequence[NewKey],
        now_ms: int,
    ) -> tuple[dict[str, int], int | None]:
        """Store what a /keys/upload carries, atomically. Returns the device's one-time key
        counts and the device list position if its device keys changed.

        Raises IdentityKeysChanged or OneTimeKeyConflict; nothing is written then.
        """

        def txn(cursor: Cursor) -> tuple[dict[str, int], Collection[Change]]:
            changes: list[Change] = []
            if device_keys is not None and _set_device_keys_txn(
                cursor, user_id, device_id, device_keys, now_ms
            ):
                changes.append((user_id, device_id))
            if one_time_keys:
                _add_one_time_keys_txn(cursor, user_id, device_id, one_time_keys)
            for key in fallback_keys:
                _set_fallback_key_txn(cursor, user_id, device_id, key)
            return _count_one_time_keys_txn(cursor, user_id, device_id), changes

        return await self.device_lists.run_changing("e2e_upload_keys", txn)

    # --- reads -----------------------------------------------------------------------------

    async def get_device_keys(
        self, query: Mapping[str, Collection[str]]
    ) -> dict[str, dict[str, StoredDeviceKeys]]:
        """Device keys of the users in ``query`` (user -> device IDs; empty: all devices)."""
        user_ids = sorted(query)

        def txn(cursor: Cursor) -> dict[str, dict[str, StoredDeviceKeys]]:
            found: dict[str, dict[str, StoredDeviceKeys]] = defaultdict(dict)
            for chunk in _chunks(user_ids):
                placeholders = ",".join("?" * len(chunk))
                cursor.execute(
                    "SELECT k.user_id, k.device_id, k.key_json, d.display_name"
                    " FROM e2e_device_keys AS k LEFT JOIN devices AS d"
                    " ON d.user_id = k.user_id AND d.device_id = k.device_id"
                    f" WHERE k.user_id IN ({placeholders})",
                    tuple(chunk),
                )
                for user, device, key_json, display_name in cursor.fetchall():
                    wanted = query[user]
                    if wanted and device not in wanted:
                        continue
                    found[user][device] = StoredDeviceKeys(json.loads(key_json), display_name)
            return dict(found)

        return await self.db.run_interaction("get_e2e_device_keys", txn)

    async def get_device_key(self, user_id: str, device_id: str) -> JsonDict | None:
        rows = await self.db.execute(
            "get_e2e_device_key",
            "SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
            user_id,
            device_id,
        )
        return json.loads(rows[0][0]) if rows else None

    async def get_key_counts(
        self, user_id: str, device_id: str
    ) -> tuple[dict[str, int], list[str]]:
        """The device's one-time key counts by algorithm (``signed_curve25519`` always
        there) and its unused fallback key algorithms, in one transaction (every /sync)."""

        def txn(cursor: Cursor) -> tuple[dict[str, int], list[str]]:
            return (
                _count_one_time_keys_txn(cursor, user_id, device_id),
                _unused_fallback_key_types_txn(cursor, user_id, device_id),
            )

        return await self.db.run_interaction("sync_e2e_key_counts", txn)

    async def claim(
        self, wanted: Sequence[tuple[str, str, str]]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """For each (user, device, algorithm): the oldest one-time key, taken; or else the
        device's fallback key for that algorithm, marked used. Missing ones are left out."""

        def txn(cursor: Cursor) -> dict[str, dict[str, dict[str, Any]]]:
            claimed: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
            for user_id, device_id, algorithm in wanted:
                cursor.execute(
                    "SELECT key_id, key_json FROM e2e_one_time_keys"
                    " WHERE user_id = ? AND device_id = ? AND algorithm = ?"
                    " ORDER BY seq LIMIT 1",
                    (user_id, device_id, algorithm),
                )
                row = cursor.fetchone()
                if row is not None:
                    cursor.execute(
                        "DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
                        " AND algorithm = ? AND key_id = ?",
                        (user_id, device_id, algorithm, row[0]),
                    )
                else:
                    cursor.execute(
                        "SELECT key_id, key_json FROM e2e_fallback_keys"
                        " WHERE user_id = ? AND device_id = ? AND algorithm = ?",
                        (user_id, device_id, algorithm),
                    )
                    row = cursor.fetchone()
                    if row is None:
                        continue
                    cursor.execute(
                        "UPDATE e2e_fallback_keys SET used = TRUE"
                        " WHERE user_id = ? AND device_id = ? AND algorithm = ?",
                        (user_id, device_id, algorithm),
                    )
                key_id, key_json = row
                claimed[user_id][device_id] = {f"{algorithm}:{key_id}": json.loads(key_json)}
            return dict(claimed)

        return await self.db.run_interaction("claim_e2e_one_time_keys", txn)

    # --- cross-signing ---------------------------------------------------------------------

    async def get_cross_signing_keys(
        self, user_ids: Collection[str]
    ) -> dict[str, dict[str, JsonDict]]:
        """user -> key type ("master", "self_signing", "user_signing") -> the key."""

        def txn(cursor: Cursor) -> dict[str, dict[str, JsonDict]]:
            found: dict[str, dict[str, JsonDict]] = defaultdict(dict)
            for chunk in _chunks(sorted(user_ids)):
                placeholders = ",".join("?" * len(chunk))
                cursor.execute(
                    "SELECT user_id, key_type, key_json FROM e2e_cross_signing_keys"
                    f" WHERE user_id IN ({placeholders})",
                    tuple(chunk),
                )
                for user_id, key_type, key_json in cursor.fetchall():
                    found[user_id][key_type] = json.loads(key_json)
            return dict(found)

        if not user_ids:
            return {}
        return await self.db.run_interaction("get_cross_signing_keys", txn)

    async def set_cross_signing_keys(
        self, user_id: str, keys: Mapping[str, tuple[str, JsonDict]]
    ) -> int | None:
        """Replace the user's keys of these types (type -> (public key, key)), as one
        device list change of the user. Its position."""

        def txn(cursor: Cursor) -> tuple[None, Collection[Change]]:
            cursor.execute_batch(
                "INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, key_type) DO UPDATE"
                " SET public_key = excluded.public_key, key_json = excluded.key_json",
                [(user_id, t, public, _dump(key)) for t, (public, key) in keys.items()],
            )
            # A new master key makes every signature on the old one meaningless.
            if "master" in keys:
                cursor.execute(
                    "DELETE FROM e2e_cross_signing_signatures"
                    " WHERE target_user_id = ? AND target_key_id NOT IN"
                    " (SELECT device_id FROM e2e_device_keys WHERE user_id = ?)",
                    (user_id, user_id),
                )
            return None, [(user_id, None)]

        _, position = await self.device_lists.run_changing("set_cross_signing_keys", txn)
        return position

    async def store_signatures(self, rows: Sequence[SignatureRow]) -> int | None:
        """Add signatures (replacing one by the same signer key on the same target), as a
        device list change of every target user. Its position."""

        def txn(cursor: Cursor) -> tuple[None, Collection[Change]]:
            cursor.execute_batch(
                "INSERT INTO e2e_cross_signing_signatures (target_user_id, target_key_id,"
                " signer_user_id, signer_key_id, signature) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id)"
                " DO UPDATE SET signature = excluded.signature",
                [
                    (
                        r.target_user_id,
                        r.target_key_id,
                        r.signer_user_id,
                        r.signer_key_id,
                        r.signature,
                    )
                    for r in rows
                ],
            )
            return None, sorted({(r.target_user_id, None) for r in rows}, key=str)

        if not rows:
            return None
        _, position = await self.device_lists.run_changing("store_key_signatures", txn)
        return position

    async def get_signatures(self, user_ids: Collection[str]) -> list[SignatureRow]:
        """Every uploaded signature on keys of these users."""

        def txn(cursor: Cursor) -> list[SignatureRow]:
            found: list[SignatureRow] = []
            for chunk in _chunks(sorted(user_ids)):
                placeholders = ",".join("?" * len(chunk))
                cursor.execute(
                    "SELECT target_user_id, target_key_id, signer_user_id, signer_key_id,"
                    " signature FROM e2e_cross_signing_signatures"
                    f" WHERE target_user_id IN ({placeholders})",
                    tuple(chunk),
                )
                found.extend(SignatureRow(*row) for row in cursor.fetchall())
            return found

        if not user_ids:
            return []
        return await self.db.run_interaction("get_key_signatures", txn)


# --- transaction helpers ------------------------------------------------------------------


def _set_device_keys_txn(
    cursor: Cursor, user_id: str, device_id: str, keys: JsonDict, now_ms: int
) -> bool:
    """True if the stored keys changed."""
    cursor.execute(
        "SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
        (user_id, device_id),
    )
    row = cursor.fetchone()
    new_json = _dump(keys)
    if row is not None:
        if row[0] == new_json:
            return False
        if json.loads(row[0]).get("keys") != keys.get("keys"):
            raise IdentityKeysChanged()
        cursor.execute(
            "UPDATE e2e_device_keys SET key_json = ?, ts_added_ms = ?"
            " WHERE user_id = ? AND device_id = ?",
            (new_json, now_ms, user_id, device_id),
        )
        return True
    cursor.execute(
        "INSERT INTO e2e_device_keys (user_id, device_id, key_json, ts_added_ms)"
        " VALUES (?, ?, ?, ?)",
        (user_id, device_id, new_json, now_ms),
    )
    return True


def _add_one_time_keys_txn(
    cursor: Cursor, user_id: str, device_id: str, keys: Sequence[NewKey]
) -> None:
    cursor.execute(
        "SELECT algorithm, key_id, key_json FROM e2e_one_time_keys"
        " WHERE user_id = ? AND device_id = ?",
        (user_id, device_id),
    )
    existing = {(alg, key_id): key_json for alg, key_id, key_json in cursor.fetchall()}
    cursor.execute(
        "SELECT COALESCE(MAX(seq), 0) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?",
        (user_id, device_id),
    )
    row = cursor.fetchone()
    seq = int(row[0]) if row else 0
    new_rows = []
    for key in keys:
        key_json = _dump(key.key)
        old = existing.get((key.algorithm, key.key_id))
        if old is not None:
            # An identical re-upload (a retried request) is no change; a different key
            # under the same ID would leave the sender and receiver disagreeing.
            if old != key_json:
                raise OneTimeKeyConflict(f"{key.algorithm}:{key.key_id}")
            continue
        seq += 1
        existing[(key.algorithm, key.key_id)] = key_json
        new_rows.append((user_id, device_id, key.algorithm, key.key_id, key_json, seq))
    cursor.execute_batch(
        "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json, seq)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        new_rows,
    )


def _set_fallback_key_txn(cursor: Cursor, user_id: str, device_id: str, key: NewKey) -> None:
    key_json = _dump(key.key)
    cursor.execute(
        "SELECT key_id, key_json FROM e2e_fallback_keys"
        " WHERE user_id = ? AND device_id = ? AND algorithm = ?",
        (user_id, device_id, key.algorithm),
    )
    row = cursor.fetchone()
    if row is not None and (row[0], row[1]) == (key.key_id, key_json):
        return  # the same key again keeps its "used" mark
    cursor.execute(
        "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)"
        " VALUES (?, ?, ?, ?, ?, FALSE) ON CONFLICT (user_id, device_id, algorithm) DO UPDATE"
        " SET key_id = excluded.key_id, key_json = excluded.key_json, used = FALSE",
        (user_id, device_id, key.algorithm, key.key_id, key_json),
    )


def _count_one_time_keys_txn(cursor: Cursor, user_id: str, device_id: str) -> dict[str, int]:
    cursor.execute(
        "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys"
        " WHERE user_id = ? AND device_id = ? GROUP BY algorithm",
        (user_id, device_id),
    )
    counts = {alg: int(n) for alg, n in cursor.fetchall()}
    # Clients read a missing count as "unknown" and some upload nothing then: always say 0.
    counts.setdefault("signed_curve25519", 0)
    return counts


def _unused_fallback_key_types_txn(cursor: Cursor, user_id: str, device_id: str) -> list[str]:
    cursor.execute(
        "SELECT algorithm FROM e2e_fallback_keys"
        " WHERE user_id = ? AND device_id = ? AND NOT used ORDER BY algorithm",
        (user_id, device_id),
    )
    return [row[0] for row in cursor.fetchall()]


class DeviceKeysCleanup:
    """The accounts store's hook for deleted devices: their keys, signatures and pending
    to-device messages go in the deleting transaction, with a device list change."""

    def __init__(self, device_lists: DeviceListStore) -> None:
        self.device_lists = device_lists
        # Told (user_id, position) after a deletion has committed.
        self.on_change: Any = None

    def reserve(self) -> int:
        [position] = self.device_lists.stream_ids.allocate(1)
        return position

    def deleted_txn(
        self, cursor: Cursor, user_id: str, device_ids: Sequence[str], position: int
    ) -> None:
        if not device_ids:
            return
        delete_device_keys_txn(cursor, user_id, device_ids)
        record_changes_txn(cursor, position, [(user_id, d) for d in device_ids])

    def release(self, position: int, user_id: str, deleted: bool) -> None:
        self.device_lists.stream_ids.finished([position])
        if deleted and self.on_change is not None:
            self.on_change(user_id, position)
