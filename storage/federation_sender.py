"""The federation sender's memory: per destination, what it must still be sent."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from storage.engine import Cursor, Database


class FederationSenderStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_joined_servers(self, room_id: str) -> set[str]:
        """The servers with a joined member in the room now."""
        rows = await self.db.execute(
            "get_joined_servers",
            "SELECT state_key FROM current_state_events"
            " WHERE type = 'm.room.member' AND room_id = ? AND membership = 'join'",
            room_id,
        )
        return {_domain(row[0]) for row in rows if ":" in row[0]}

    async def get_joined_servers_at(
        self, room_id: str, stream_orderings: Collection[int]
    ) -> dict[int, set[str]]:
        """For each stream position, the servers with a joined member in the room just
        after it: the members now, corrected by the membership events that came later
        (almost always none, so this costs little more than asking for the members now)."""
        wanted = sorted(set(stream_orderings))
        if not wanted:
            return {}

        def read(cursor: Cursor) -> dict[int, set[str]]:
            cursor.execute(
                "SELECT state_key FROM current_state_events"
                " WHERE type = 'm.room.member' AND room_id = ? AND membership = 'join'",
                (room_id,),
            )
            joined_now = {row[0] for row in cursor.fetchall()}
            cursor.execute(
                "SELECT DISTINCT user_id FROM room_memberships"
                " WHERE room_id = ? AND stream_ordering > ?",
                (room_id, wanted[0]),
            )
            changed = sorted(row[0] for row in cursor.fetchall())
            history: dict[str, list[tuple[int, str]]] = {}
            for start in range(0, len(changed), 500):
                chunk = changed[start : start + 500]
                cursor.execute(
                    "SELECT user_id, stream_ordering, membership FROM room_memberships"
                    f" WHERE room_id = ? AND user_id IN ({','.join('?' * len(chunk))})"
                    " ORDER BY stream_ordering",
                    (room_id, *chunk),
                )
                for user_id, stream, membership in cursor.fetchall():
                    history.setdefault(user_id, []).append((int(stream), membership))
            result = {}
            for position in wanted:
                joined = set(joined_now)
                for user_id, events in history.items():
                    if not any(stream > position for stream, _ in events):
                        continue
                    before = [m for stream, m in events if stream <= position]
                    if before and before[-1] == "join":
                        joined.add(user_id)
                    else:
                        joined.discard(user_id)
                result[position] = {_domain(u) for u in joined if ":" in u}
            return result

        return await self.db.run_interaction("get_joined_servers_at", read)

    async def record_queued(self, room_id: str, newest: Mapping[str, int]) -> None:
        """Record, per destination, the stream position of the newest event in the room
        queued for it (ours, or one we pass on for another server)."""

        def write(cursor: Cursor) -> None:
            cursor.execute_batch(
                "INSERT INTO federation_destination_rooms (destination, room_id, stream_ordering)"
                " VALUES (?, ?, ?) ON CONFLICT (destination, room_id) DO UPDATE SET"
                " stream_ordering = CASE WHEN excluded.stream_ordering"
                "  > federation_destination_rooms.stream_ordering"
                "  THEN excluded.stream_ordering"
                "  ELSE federation_destination_rooms.stream_ordering END",
                [(d, room_id, stream) for d, stream in sorted(newest.items())],
            )

        if newest:
            await self.db.run_interaction("record_queued_for_destinations", write)

    async def record_success(self, destination: str, stream_ordering: int) -> None:
        await self.db.execute(
            "record_destination_success",
            "INSERT INTO federation_destinations (destination, last_successful_stream_ordering,"
            " retry_last_ts, retry_interval_ms) VALUES (?, ?, 0, 0)"
            " ON CONFLICT (destination) DO UPDATE SET retry_last_ts = 0, retry_interval_ms = 0,"
            " last_successful_stream_ordering = CASE WHEN"
            "  federation_destinations.last_successful_stream_ordering"
            "  > excluded.last_successful_stream_ordering"
            "  THEN federation_destinations.last_successful_stream_ordering"
            "  ELSE excluded.last_successful_stream_ordering END",
            destination,
            stream_ordering,
        )

    async def record_failure(self, destination: str, now_ms: int, interval_ms: int) -> None:
        await self.db.execute(
            "record_destination_failure",
            "INSERT INTO federation_destinations (destination, retry_last_ts, retry_interval_ms)"
            " VALUES (?, ?, ?) ON CONFLICT (destination) DO UPDATE SET"
            " retry_last_ts = excluded.retry_last_ts,"
            " retry_interval_ms = excluded.retry_interval_ms",
            destination,
            now_ms,
            interval_ms,
        )

    async def get_destinations_behind(self) -> list[tuple[str, int, int]]:
        """Destinations with events they have not had: (destination, retry_last_ts,
        retry_interval_ms)."""
        rows = await self.db.execute(
            "get_destinations_behind",
            "SELECT r.destination, COALESCE(MAX(d.retry_last_ts), 0),"
            " COALESCE(MAX(d.retry_interval_ms), 0)"
            " FROM federation_destination_rooms r LEFT JOIN federation_destinations d"
            "  ON d.destination = r.destination"
            " WHERE r.stream_ordering > COALESCE(d.last_successful_stream_ordering, 0)"
            " GROUP BY r.destination",
        )
        return [(r[0], int(r[1]), int(r[2])) for r in rows]

    async def get_catch_up_events(self, destination: str) -> Sequence[str]:
        """For each room the destination is behind in, the newest event that was queued
        for it there: sending it lets the destination fetch the rest with
        /get_missing_events (answered as history visibility allows). Never an older
        event of ours: the destination may have joined after it and must not be sent
        it (that is what a server that joined late would have had in full)."""
        rows = await self.db.execute(
            "get_catch_up_events",
            "SELECT e.event_id FROM federation_destination_rooms r"
            " JOIN events e ON e.stream_ordering = r.stream_ordering"
            " LEFT JOIN federation_destinations d ON d.destination = r.destination"
            " WHERE r.destination = ?"
            "  AND r.stream_ordering > COALESCE(d.last_successful_stream_ordering, 0)"
            "  AND e.outlier = FALSE AND e.rejected_reason IS NULL",
            destination,
        )
        return [row[0] for row in rows]

    async def add_to_outbox(
        self, outbox_id: int, destination: str, edu_type: str, content: Any
    ) -> None:
        await self.db.execute(
            "add_edu_to_outbox",
            "INSERT INTO federation_edu_outbox (id, destination, edu_type, content)"
            " VALUES (?, ?, ?, ?)",
            outbox_id,
            destination,
            edu_type,
            json.dumps(content, separators=(",", ":")),
        )

    async def remove_from_outbox(self, outbox_ids: Collection[int]) -> None:
        if not outbox_ids:
            return
        ids = sorted(outbox_ids)
        placeholders = ",".join("?" * len(ids))
        await self.db.execute(
            "remove_edus_from_outbox",
            f"DELETE FROM federation_edu_outbox WHERE id IN ({placeholders})",
            *ids,
        )

    async def get_outbox(self) -> list[tuple[int, str, str, Any]]:
        """Every undelivered durable EDU, oldest first: (id, destination, type, content)."""
        rows = await self.db.execute(
            "get_edu_outbox",
            "SELECT id, destination, edu_type, content FROM federation_edu_outbox ORDER BY id",
        )
        return [(int(r[0]), r[1], r[2], json.loads(r[3])) for r in rows]


def _domain(user_id: str) -> str:
    return user_id.split(":", 1)[1]
