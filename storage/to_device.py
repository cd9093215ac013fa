"""The to-device inbox: messages waiting for a device until its next /sync acknowledges them.

Positions come from the "to_device" stream. The highest position ever handed out is kept
in ``e2e_stream_positions`` as well, because the inbox may be emptied: after a restart the
stream must go on from there, or a client's token would acknowledge messages it never saw.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.engine import Cursor, Database
from storage.stream_ids import StreamIdGenerator

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class OutgoingMessage:
    user_id: str
    device_id: str  # a device ID, or "*" for all the user's devices
    message: JsonDict  # {"type", "sender", "content"}


class ToDeviceStore:
    name = "to_device"

    def __init__(self, db: Database) -> None:
        self.db = db
        self.stream_ids = StreamIdGenerator(0)

    async def load_positions(self) -> None:
        rows = await self.db.execute(
            "to_device_max_stream",
            "SELECT COALESCE(MAX(position), 0) FROM e2e_stream_positions WHERE stream_name = ?",
            self.name,
        )
        self.stream_ids = StreamIdGenerator(int(rows[0][0]) if rows else 0)

    def current_position(self) -> int:
        return self.stream_ids.current_token()

    async def send(
        self,
        sender_user_id: str,
        sender_device_id: str,
        txn_id: str,
        messages: Sequence[OutgoingMessage],
        now_ms: int,
    ) -> dict[str, int] | None:
        """Queue the messages for existing devices (unknown users and devices get none),
        once per (sender device, txn_id). Returns {user_id: position} of the recipients
        given something, or None if this transaction ID was already used."""
        user_ids = sorted({m.user_id for m in messages})
        [position] = self.stream_ids.allocate(1)

        def txn(cursor: Cursor) -> dict[str, int] | None:
            cursor.execute(
                "INSERT INTO to_device_txns (user_id, device_id, txn_id, ts_ms) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id, device_id, txn_id) DO NOTHING",
                (sender_user_id, sender_device_id, txn_id, now_ms),
            )
            if cursor.rowcount == 0:
                return None
            devices: dict[str, set[str]] = {}
            for user_id in user_ids:
                cursor.execute("SELECT device_id FROM devices WHERE user_id = ?", (user_id,))
                devices[user_id] = {row[0] for row in cursor.fetchall()}
            # "*" and a named device of the same user may name one device twice; the last
            # message given for it wins, as in Synapse.
            targets: dict[tuple[str, str], JsonDict] = {}
            for m in messages:
                known = devices.get(m.user_id, set())
                for device_id in sorted(known) if m.device_id == "*" else [m.device_id]:
                    if device_id in known:
                        targets[(m.user_id, device_id)] = m.message
            cursor.execute_batch(
                "INSERT INTO device_inbox (user_id, device_id, stream_id, message_json)"
                " VALUES (?, ?, ?, ?)",
                [(u, d, position, json.dumps(m)) for (u, d), m in targets.items()],
            )
            cursor.execute(
                "UPDATE e2e_stream_positions SET position = ?"
                " WHERE stream_name = ? AND position < ?",
                (position, self.name, position),
            )
            return {user_id: position for user_id, _ in targets}

        try:
            return await self.db.run_interaction("send_to_device", txn)
        finally:
            self.stream_ids.finished([position])

    async def take(self, user_id: str, device_id: str, after: int, upto: int) -> list[JsonDict]:
        """Delete what the device acknowledged (positions up to ``after``); the messages
        at positions in (after, upto], oldest first."""

        def txn(cursor: Cursor) -> list[JsonDict]:
            if after > 0:
                cursor.execute(
                    "DELETE FROM device_inbox WHERE user_id = ? AND device_id = ?"
                    " AND stream_id <= ?",
                    (user_id, device_id, after),
                )
            cursor.execute(
                "SELECT message_json FROM device_inbox WHERE user_id = ? AND device_id = ?"
                " AND stream_id > ? AND stream_id <= ? ORDER BY stream_id",
                (user_id, device_id, after, upto),
            )
            return [json.loads(row[0]) for row in cursor.fetchall()]

        return await self.db.run_interaction("take_to_device", txn)
