"""Read receipts: the latest per (room, receipt type, user, thread), with stream positions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.engine import Cursor, Database
from storage.stream_ids import StreamIdGenerator

# thread_id stored for an unthreaded receipt.
UNTHREADED = ""
# Room IDs per query when reading many rooms at once (well under every engine's limit).
_ROOM_CHUNK = 500


@dataclass(frozen=True)
class Receipt:
    room_id: str
    receipt_type: str
    user_id: str
    thread_id: str | None  # None: unthreaded
    event_id: str
    ts: int
    event_stream_ordering: int = 0


class ReceiptStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.stream_ids = StreamIdGenerator(0)

    async def load_positions(self) -> None:
        rows = await self.db.execute(
            "load_receipts_position", "SELECT COALESCE(MAX(stream_id), 0) FROM receipts"
        )
        self.stream_ids = StreamIdGenerator(int(rows[0][0]))

    def current_position(self) -> int:
        return self.stream_ids.current_token()

    async def insert(self, receipt: Receipt, event_stream_ordering: int) -> int | None:
        """Store ``receipt`` unless the same slot already points at a later (or the same)
        event; the stream position of the change, or None if nothing changed."""
        (stream_id,) = self.stream_ids.allocate()
        try:
            stored: bool = await self.db.run_interaction(
                "insert_receipt", _insert, receipt, event_stream_ordering, stream_id
            )
        finally:
            self.stream_ids.finished([stream_id])
        return stream_id if stored else None

    async def get_changes(self, room_ids: Sequence[str], since: int | None) -> list[Receipt]:
        """Receipts in ``room_ids`` changed after ``since`` (all current ones when None)."""
        found: list[Receipt] = []
        rooms = list(room_ids)
        for start in range(0, len(rooms), _ROOM_CHUNK):
            chunk = rooms[start : start + _ROOM_CHUNK]
            placeholders = ",".join("?" * len(chunk))
            rows = await self.db.execute(
                "get_receipt_changes",
                "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts,"
                " event_stream_ordering FROM receipts"
                f" WHERE room_id IN ({placeholders}) AND stream_id > ?",
                *chunk,
                since or 0,
            )
            found.extend(_row_to_receipt(row) for row in rows)
        return found

    async def get_user_receipts(
        self, user_id: str, room_id: str, receipt_types: Sequence[str]
    ) -> list[Receipt]:
        """The user's receipts of these types in a room (for unread counts)."""
        placeholders = ",".join("?" * len(receipt_types))
        rows = await self.db.execute(
            "get_user_receipts",
            "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts,"
            " event_stream_ordering FROM receipts"
            f" WHERE user_id = ? AND room_id = ? AND receipt_type IN ({placeholders})",
            user_id,
            room_id,
            *receipt_types,
        )
        return [_row_to_receipt(row) for row in rows]


def _row_to_receipt(row: tuple[object, ...]) -> Receipt:
    room_id, receipt_type, user_id, thread_id, event_id, ts, ordering = row
    return Receipt(
        room_id=str(room_id),
        receipt_type=str(receipt_type),
        user_id=str(user_id),
        thread_id=str(thread_id) if thread_id != UNTHREADED else None,
        event_id=str(event_id),
        ts=int(ts),  # type: ignore[call-overload]
        event_stream_ordering=int(ordering),  # type: ignore[call-overload]
    )


def _insert(cursor: Cursor, receipt: Receipt, event_stream_ordering: int, stream_id: int) -> bool:
    thread = receipt.thread_id if receipt.thread_id is not None else UNTHREADED
    # A receipt is an "up to" marker: it never moves back to an earlier event.
    cursor.execute(
        "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id,"
        " event_stream_ordering, ts, stream_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET"
        " event_id = excluded.event_id,"
        " event_stream_ordering = excluded.event_stream_ordering,"
        " ts = excluded.ts, stream_id = excluded.stream_id"
        " WHERE receipts.event_stream_ordering < excluded.event_stream_ordering",
        (
            receipt.room_id,
            receipt.receipt_type,
            receipt.user_id,
            thread,
            receipt.event_id,
            event_stream_ordering,
            receipt.ts,
            stream_id,
        ),
    )
    return cursor.rowcount > 0
