"""Fully read markers (room account data ``m.fully_read``) and ``/read_markers``."""

from __future__ import annotations

import logging
from typing import Any

from homeserver.errors import bad_json, forbidden, not_found
from homeserver.handlers.account_data import FULLY_READ, AccountDataHandler
from homeserver.handlers.receipts import READ, READ_PRIVATE, ReceiptsHandler
from homeserver.handlers.typing import is_joined
from homeserver.types import Requester
from homeserver.util.linearizer import Linearizer
from storage.events import EventStore

logger = logging.getLogger(__name__)


class ReadMarkersHandler:
    def __init__(
        self,
        *,
        event_store: EventStore,
        account_data: AccountDataHandler,
        receipts: ReceiptsHandler,
    ) -> None:
        self._events = event_store
        self._account_data = account_data
        self._receipts = receipts
        # Compare-and-set of one marker: one update per (room, user) at a time.
        self._locks = Linearizer()
        receipts.set_fully_read = self.set_fully_read

    async def set_read_markers(self, requester: Requester, room_id: str, body: Any) -> None:
        """POST /rooms/{roomId}/read_markers: the marker and/or the read receipts."""
        if not isinstance(body, dict):
            raise bad_json("Content must be a JSON object.")
        wanted: dict[str, str] = {}
        for key in (FULLY_READ, READ, READ_PRIVATE):
            value = body.get(key)
            if value is None:
                continue
            if not isinstance(value, str) or not value.startswith("$"):
                raise bad_json(f"{key} must be an event ID")
            wanted[key] = value
        unknown = set(body) - {FULLY_READ, READ, READ_PRIVATE}
        if unknown:
            # Receipt types are extensible: log (to help debug typos), do not refuse.
            logger.info("ignoring unrecognised read marker types %s", sorted(unknown))
        if not await is_joined(self._events, room_id, requester.user_id):
            raise forbidden(f"User {requester.user_id} not in room {room_id}")
        if FULLY_READ in wanted:
            await self.set_fully_read(requester, room_id, wanted[FULLY_READ])
        for receipt_type in (READ, READ_PRIVATE):
            if receipt_type in wanted:
                await self._receipts.receive_receipt(
                    requester, room_id, receipt_type, wanted[receipt_type], None
                )

    async def set_fully_read(self, requester: Requester, room_id: str, event_id: str) -> None:
        """Move the user's fully read marker to ``event_id`` if that is later than where
        it is (a marker only moves forward, as Synapse does)."""
        user_id = requester.user_id
        if not await is_joined(self._events, room_id, user_id):
            raise forbidden(f"User {user_id} not in room {room_id}")
        event = await self._events.get_event(event_id)
        if event is None or event.room_id != room_id:
            raise not_found(f"Could not find event {event_id} in room {room_id}")
        async with self._locks.lock((room_id, user_id)):
            current = await self._account_data.get_room_data(user_id, room_id, FULLY_READ)
            current_id = current.get("event_id") if current is not None else None
            if isinstance(current_id, str):
                if current_id == event_id:
                    return
                previous = await self._events.get_event(current_id)
                if previous is not None and _ordering(previous) >= _ordering(event):
                    return
            await self._account_data.set_room(user_id, room_id, FULLY_READ, {"event_id": event_id})


def _ordering(event: Any) -> tuple[int, int]:
    return (int(event.depth), int(event.internal_metadata.get("stream_ordering", 0)))
