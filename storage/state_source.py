"""State resolution fed from the database: a synchronous event source on a pool thread.

``homeserver.state`` is pure and synchronous; ``resolve_state_in_db`` runs it inside one
database interaction, where this source reads the events it asks for (in batches, one
level of the auth graph at a time) from the same connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from homeserver.events.model import Event, StateKey
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.state.resolve import resolve_state
from homeserver.state.source import StateResolutionSource
from storage.engine import Cursor, Database

_CHUNK = 500


class CursorEventSource(StateResolutionSource):
    def __init__(self, cursor: Cursor, known: Mapping[str, Event] | None = None) -> None:
        self._cursor = cursor
        self._cache: dict[str, Event] = dict(known or {})

    def get_events(self, event_ids: Iterable[str]) -> Mapping[str, Event]:
        wanted = set(event_ids)
        missing = [e for e in wanted if e not in self._cache]
        for start in range(0, len(missing), _CHUNK):
            chunk = missing[start : start + _CHUNK]
            placeholders = ",".join("?" * len(chunk))
            self._cursor.execute(
                "SELECT e.event_id, e.json, r.room_version, e.rejected_reason"
                " FROM events e JOIN rooms r ON r.room_id = e.room_id"
                f" WHERE e.event_id IN ({placeholders})",
                chunk,
            )
            for event_id, pdu_json, version, rejected in self._cursor.fetchall():
                event = Event(json.loads(pdu_json), KNOWN_ROOM_VERSIONS[version], event_id)
                event.rejected_reason = rejected
                self._cache[event_id] = event
        return {e: self._cache[e] for e in wanted if e in self._cache}


async def resolve_state_in_db(
    db: Database,
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    known: Mapping[str, Event] | None = None,
) -> dict[StateKey, str]:
    """Resolve ``state_sets`` with the room version's algorithm, events read from ``db``
    (and ``known``, events not stored yet)."""

    def run(cursor: Cursor) -> dict[StateKey, str]:
        return resolve_state(room_version, state_sets, CursorEventSource(cursor, known))

    return await db.run_interaction("resolve_state", run)
