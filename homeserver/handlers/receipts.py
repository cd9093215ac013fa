"""Read receipts (``m.read``, ``m.read.private``, threaded or not) and the m.receipt
events /sync serves.

Listeners registered with ``add_receipt_listener`` hear of every receipt that moved
(after it is committed), e.g. to reset unread notification counts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from homeserver.errors import bad_json, forbidden, invalid_param, not_found
from homeserver.events.model import Event
from homeserver.handlers.typing import is_joined
from homeserver.notifier import Notifier
from homeserver.streams import StreamToken
from homeserver.types import Requester
from storage.events import EventStore
from storage.receipts import Receipt, ReceiptStore

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

STREAM = "receipts"
READ = "m.read"
READ_PRIVATE = "m.read.private"
FULLY_READ = "m.fully_read"
RECEIPT_TYPES = (READ, READ_PRIVATE)
MAIN_THREAD = "main"
# How far up a chain of relations an event's thread is looked for (the spec's advice).
_MAX_RELATION_HOPS = 3

ReceiptListener = Callable[[Receipt], Awaitable[None]]
FullyReadSetter = Callable[[Requester, str, str], Awaitable[None]]


class ReceiptsHandler:
    name = STREAM

    def __init__(
        self,
        *,
        store: ReceiptStore,
        event_store: EventStore,
        notifier: Notifier,
        now_ms: Callable[[], int],
        bump_active: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self._events = event_store
        self._notifier = notifier
        self._now_ms = now_ms
        self._bump_active = bump_active
        self._listeners: list[ReceiptListener] = []
        # Set by the read markers handler: m.fully_read through /receipt moves the marker.
        self.set_fully_read: FullyReadSetter | None = None

    def current_position(self) -> int:
        return self.store.current_position()

    def add_receipt_listener(self, listener: ReceiptListener) -> None:
        """Hear of every stored receipt (all types; after commit). A listener's failure
        is logged and does not fail the request."""
        self._listeners.append(listener)

    async def send_receipt(
        self,
        requester: Requester,
        room_id: str,
        receipt_type: str,
        event_id: str,
        thread_id: str | None = None,
    ) -> None:
        """POST /rooms/{roomId}/receipt/{receiptType}/{eventId}."""
        if receipt_type not in (*RECEIPT_TYPES, FULLY_READ):
            raise invalid_param(f"Receipt type must be one of {READ}, {READ_PRIVATE}, {FULLY_READ}")
        if thread_id is not None and receipt_type == FULLY_READ:
            raise invalid_param(f"thread_id is not compatible with {FULLY_READ} receipts.")
        if receipt_type == FULLY_READ:
            assert self.set_fully_read is not None, "read markers handler not wired"
            await self.set_fully_read(requester, room_id, event_id)
            return
        await self.receive_receipt(requester, room_id, receipt_type, event_id, thread_id)

    async def receive_receipt(
        self,
        requester: Requester,
        room_id: str,
        receipt_type: str,
        event_id: str,
        thread_id: str | None,
    ) -> None:
        user_id = requester.user_id
        if not await is_joined(self._events, room_id, user_id):
            raise forbidden(f"User {user_id} not in room {room_id}")
        event = await self._events.get_event(event_id)
        if event is None or event.room_id != room_id or event.internal_metadata.get("outlier"):
            raise not_found(f"Could not find event {event_id} in room {room_id}")
        if thread_id is not None and not await self._is_in_thread(event, thread_id):
            raise invalid_param(f"event_id {event_id} is not related to thread {thread_id}")
        if self._bump_active is not None:
            await self._bump_active(user_id)
        receipt = Receipt(
            room_id=room_id,
            receipt_type=receipt_type,
            user_id=user_id,
            thread_id=thread_id,
            event_id=event_id,
            ts=self._now_ms(),
            event_stream_ordering=int(event.internal_metadata.get("stream_ordering", 0)),
        )
        stored = await self.store.insert(receipt, receipt.event_stream_ordering)
        if stored is None:
            return  # an older event than the one already receipted: nothing moved
        self._notifier.notify(STREAM, self.store.current_position(), rooms=[room_id])
        for listener in self._listeners:
            try:
                await listener(receipt)
            except Exception:
                logger.exception("receipt listener failed")

    async def receive_remote_receipt(
        self, room_id: str, user_id: str, event_id: str, thread_id: str | None, ts: int
    ) -> bool:
        """Another server's public read receipt for its user. Kept only when the user is
        joined and the event is one we have in the room; listeners are not told (they
        concern local users). Whether it was stored."""
        if not await is_joined(self._events, room_id, user_id):
            return False
        event = await self._events.get_event(event_id)
        if event is None or event.room_id != room_id or event.internal_metadata.get("outlier"):
            return False
        ordering = int(event.internal_metadata.get("stream_ordering", 0))
        receipt = Receipt(
            room_id=room_id,
            receipt_type=READ,
            user_id=user_id,
            thread_id=thread_id,
            event_id=event_id,
            ts=ts,
            event_stream_ordering=ordering,
        )
        if await self.store.insert(receipt, ordering) is None:
            return False
        self._notifier.notify(STREAM, self.store.current_position(), rooms=[room_id])
        return True

    async def _is_in_thread(self, event: Event, thread_id: str) -> bool:
        """Whether ``event`` may carry a receipt for ``thread_id`` (as Synapse checks): for
        "main", no relation up its chain is a thread relation; for a thread root, the
        root is the event itself or an event up its chain of relations."""
        current: Event | None = event
        for _ in range(_MAX_RELATION_HOPS + 1):
            if current is None:
                break
            if current.event_id == thread_id:
                return True
            relates = current.content.get("m.relates_to")
            if not isinstance(relates, dict):
                break
            parent_id = relates.get("event_id")
            if not isinstance(parent_id, str):
                break
            if relates.get("rel_type") == "m.thread":
                return parent_id == thread_id
            current = await self._events.get_event(parent_id)
        return thread_id == MAIN_THREAD

    # --- for /sync ----------------------------------------------------------------------

    async def get_receipt_events(
        self, room_ids: Sequence[str], since_position: int | None, user_id: str
    ) -> dict[str, JsonDict]:
        """One ``m.receipt`` event per room of ``room_ids`` whose receipts changed after
        ``since_position`` (every current receipt when None or 0). Private receipts
        appear only to their owner."""
        receipts = await self.store.get_changes(room_ids, since_position)
        contents: dict[str, JsonDict] = {}
        for receipt in receipts:
            if receipt.receipt_type == READ_PRIVATE and receipt.user_id != user_id:
                continue
            data: JsonDict = {"ts": receipt.ts}
            if receipt.thread_id is not None:
                data["thread_id"] = receipt.thread_id
            by_event = contents.setdefault(receipt.room_id, {})
            by_type = by_event.setdefault(receipt.event_id, {})
            users = by_type.setdefault(receipt.receipt_type, {})
            existing = users.get(receipt.user_id)
            # A threaded and an unthreaded receipt on one event: the unthreaded one wins
            # (MSC4102), since it says more.
            if existing is None or "thread_id" in existing:
                users[receipt.user_id] = data
        return {
            room_id: {"type": "m.receipt", "content": content}
            for room_id, content in contents.items()
        }

    async def sync_ephemeral(
        self, user_id: str, room_ids: Sequence[str], since: StreamToken | None
    ) -> dict[str, list[JsonDict]]:
        """SyncSections.ephemeral provider: get_receipt_events at the token's part."""
        position = dict(since.extra).get(STREAM, 0) if since is not None else None
        if position is not None and position >= self.current_position():
            return {}  # nothing stored since the token: no need to ask the database
        events = await self.get_receipt_events(room_ids, position, user_id)
        return {room_id: [event] for room_id, event in events.items()}


def parse_thread_id(body: JsonDict) -> str | None:
    """The receipt body's thread_id: None when absent; 400 when not a non-empty string."""
    if "thread_id" not in body:
        return None
    thread_id = body["thread_id"]
    if not isinstance(thread_id, str) or not thread_id:
        raise invalid_param("thread_id field must be a non-empty string")
    return thread_id


def require_event_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.startswith("$"):
        raise bad_json(f"{field} must be an event ID")
    return value
