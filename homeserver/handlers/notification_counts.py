"""Unread notification counts: push rules evaluated for each local member as events land,
the counts /sync shows from them, and ``GET /notifications``.

The work hangs off the notifier (a listener), so persisting an event stays one
transaction. Per room it runs in arrival order; a reader of counts first waits for the
work already queued for its rooms, so the count for an event appears in the same /sync
response as the event itself (spec "Receiving notifications").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from homeserver.auth.power_levels import get_user_power_level, parse_power_level
from homeserver.errors import invalid_param
from homeserver.events.model import Event
from homeserver.handlers.push_rules import PushRulesHandler
from homeserver.handlers.serialize import EventSerializer
from homeserver.notifier import RoomEventsNotice
from homeserver.push.evaluator import PushContext, evaluate, read_actions
from homeserver.util.caches import LruCache
from storage.events import EventStore
from storage.push_actions import MAIN_THREAD, PushActionRow, PushActionStore, ReadPositions

logger = logging.getLogger(__name__)

# The spec advises following at most 3 relations to find an event's thread.
MAX_THREAD_HOPS = 3
DEFAULT_NOTIFICATIONS_LIMIT = 20
MAX_NOTIFICATIONS_LIMIT = 1000

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class UnreadCounts:
    notification_count: int = 0
    highlight_count: int = 0

    def to_json(self) -> JsonDict:
        return {
            "notification_count": self.notification_count,
            "highlight_count": self.highlight_count,
        }


def _relates_to(event: Event) -> tuple[str, str] | None:
    relates_to = event.content.get("m.relates_to")
    if not isinstance(relates_to, dict):
        return None
    rel_type = relates_to.get("rel_type")
    parent_id = relates_to.get("event_id")
    if isinstance(rel_type, str) and isinstance(parent_id, str):
        return rel_type, parent_id
    return None


class NotificationCounter:
    def __init__(
        self,
        *,
        server_name: str,
        event_store: EventStore,
        store: PushActionStore,
        push_rules: PushRulesHandler,
        serializer: EventSerializer,
        now_ms: Callable[[], int],
    ) -> None:
        self.server_name = server_name
        self.event_store = event_store
        self.store = store
        self.push_rules = push_rules
        self.serializer = serializer
        self.now_ms = now_ms
        self._local_suffix = ":" + server_name
        # room ID -> the work queued for it (always succeeds: failures are logged).
        self._pending: dict[str, defer.Deferred[None]] = {}
        # room ID -> (state group, its joined members): read again only when the room's
        # state changes, not on every message.
        self._joined: LruCache[str, tuple[int, list[tuple[str, str]]]] = LruCache(1_000)

    # --- the event path ---------------------------------------------------------------

    def on_new_room_events(self, notice: RoomEventsNotice) -> None:
        """Notifier listener: queue the push evaluation of a newly persisted batch."""
        room_id = notice.room_id
        previous = self._pending.get(room_id)
        work = defer.Deferred.fromCoroutine(self._process_after(previous, notice))
        self._pending[room_id] = work

        def done(result: object) -> object:
            if self._pending.get(room_id) is work:
                del self._pending[room_id]
            return result

        work.addBoth(done)

    async def _process_after(
        self, previous: defer.Deferred[None] | None, notice: RoomEventsNotice
    ) -> None:
        if previous is not None:
            await _observe(previous)
        try:
            await self.process_events(notice.room_id, notice.events)
        except Exception:
            logger.exception("push evaluation failed in %s", notice.room_id)

    async def wait_for_pending(self, room_ids: Sequence[str]) -> None:
        """Wait for the push work already queued for these rooms."""
        pending = [self._pending[r] for r in room_ids if r in self._pending]
        for work in pending:
            await _observe(work)

    async def drain(self) -> None:
        """Finish the queued push work (shutdown: before the database closes)."""
        await self.wait_for_pending(list(self._pending))

    def _is_local(self, user_id: str) -> bool:
        return user_id.endswith(self._local_suffix)

    async def process_events(self, room_id: str, events: Sequence[Event]) -> None:
        """Evaluate every local member's rules for ``events`` and store what notifies."""
        events = [
            e
            for e in events
            if e.rejected_reason is None and not e.internal_metadata.get("outlier")
        ]
        if not events:
            return
        redacted = [e.redacts for e in events if e.type == "m.room.redaction" and e.redacts]
        members = await self._joined_members(room_id)
        member_count = len(members)
        member_events = {user_id: event_id for user_id, event_id in members}
        local = [user_id for user_id in member_events if self._is_local(user_id)]
        # An invite concerns its (local) target, who has not joined yet.
        invitees = {
            e.state_key
            for e in events
            if e.type == "m.room.member"
            and e.membership == "invite"
            and e.state_key
            and self._is_local(e.state_key)
        }
        users = sorted(set(local) | invitees)
        if not users:
            if redacted:
                await self.store.store_actions([], redacted, self.now_ms())
            return
        rulesets = await self.push_rules.get_rulesets(users)
        display_names = await self._display_names(
            [u for u in users if rulesets[u].uses_display_name], member_events
        )
        power = await self._power_context(room_id)

        rows: list[PushActionRow] = []
        for event in events:
            stream_ordering = event.internal_metadata.get("stream_ordering")
            if not isinstance(stream_ordering, int):
                continue
            thread_id = await self._thread_id(event)
            pdu = dict(event.pdu)
            pdu["event_id"] = event.event_id
            sender_level, notification_levels = power(event.sender)
            context = PushContext(
                event=pdu,
                room_member_count=member_count,
                sender_power_level=sender_level,
                notification_levels=notification_levels,
            )
            for user_id in users:
                if user_id == event.sender:
                    continue
                if user_id not in member_events and not (
                    user_id in invitees and event.state_key == user_id
                ):
                    continue
                actions = evaluate(
                    rulesets[user_id].ordered,
                    context,
                    user_id=user_id,
                    display_name=display_names.get(user_id),
                )
                outcome = read_actions(actions)
                if outcome.notify or outcome.highlight:
                    rows.append(
                        PushActionRow(
                            user_id=user_id,
                            event_id=event.event_id,
                            room_id=room_id,
                            stream_ordering=stream_ordering,
                            thread_id=thread_id,
                            actions=actions,
                            notify=outcome.notify,
                            highlight=outcome.highlight,
                        )
                    )
        await self.store.store_actions(rows, redacted, self.now_ms())

    async def _joined_members(self, room_id: str) -> list[tuple[str, str]]:
        """(user ID, membership event ID) of the room's joined members, now: from the
        room's current state (its member events' memberships never change)."""
        head = await self.event_store.get_room_head(room_id)
        if head is None or head.state_group is None:
            return await self.store.get_joined_members(room_id)
        cached = self._joined.get(room_id)
        if cached is not None and cached[0] == head.state_group:
            return cached[1]
        member_events = {
            state_key: event_id
            for (event_type, state_key), event_id in head.state.items()
            if event_type == "m.room.member"
        }
        events = await self.event_store.get_events(member_events.values())
        if len(events) < len(member_events):
            return await self.store.get_joined_members(room_id)
        members = [
            (user_id, event_id)
            for user_id, event_id in member_events.items()
            if events[event_id].membership == "join"
        ]
        self._joined.set(room_id, (head.state_group, members))
        return members

    async def _display_names(
        self, user_ids: Sequence[str], member_events: Mapping[str, str]
    ) -> dict[str, str]:
        wanted = {u: member_events[u] for u in user_ids if u in member_events}
        if not wanted:
            return {}
        events = await self.event_store.get_events(wanted.values())
        names: dict[str, str] = {}
        for user_id, event_id in wanted.items():
            event = events.get(event_id)
            name = event.content.get("displayname") if event is not None else None
            if isinstance(name, str) and name:
                names[user_id] = name
        return names

    async def _power_context(self, room_id: str) -> Callable[[str], tuple[int, dict[str, int]]]:
        """A function of the sender: their power level and the room's notification levels."""
        head = await self.event_store.get_room_head(room_id)
        if head is None:
            return lambda sender: (0, {})
        keys = [("m.room.create", ""), ("m.room.power_levels", "")]
        ids = {key: head.state[key] for key in keys if key in head.state}
        fetched = await self.event_store.get_events(ids.values())
        auth_events = {key: fetched[eid] for key, eid in ids.items() if eid in fetched}
        room_version = head.room_version
        levels: dict[str, int] = {}
        power_levels = auth_events.get(("m.room.power_levels", ""))
        notifications = power_levels.content.get("notifications") if power_levels else None
        if isinstance(notifications, dict):
            for key, value in notifications.items():
                level = parse_power_level(value, room_version)
                if level is not None:
                    levels[key] = level

        def for_sender(sender: str) -> tuple[int, dict[str, int]]:
            return get_user_power_level(sender, auth_events, room_version), levels

        return for_sender

    async def _thread_id(self, event: Event) -> str:
        """The thread root the event belongs to, or "main": an m.thread relation, or a
        relation (reaction, edit...) to an event in a thread, up to MAX_THREAD_HOPS."""
        current = event
        for _ in range(MAX_THREAD_HOPS):
            relation = _relates_to(current)
            if relation is None:
                return MAIN_THREAD
            rel_type, parent_id = relation
            if rel_type == "m.thread":
                return parent_id
            parent = await self.event_store.get_event(parent_id)
            if parent is None:
                return MAIN_THREAD
            current = parent
        return MAIN_THREAD

    # --- for /sync --------------------------------------------------------------------

    async def get_unread_counts(
        self, user_id: str, room_ids: Sequence[str]
    ) -> dict[str, tuple[JsonDict, dict[str, JsonDict]]]:
        """For each room: (main timeline counts, {thread root ID: counts}), each counts
        ``{"notification_count": n, "highlight_count": h}``, counting only events after
        the user's read receipts. Every room asked about is in the result; threads only
        when they have something unread."""
        rooms = list(dict.fromkeys(room_ids))
        if not rooms:
            return {}
        await self.wait_for_pending(rooms)
        counted = await self.store.count_unread_after_receipts(user_id, rooms)
        result: dict[str, tuple[JsonDict, dict[str, JsonDict]]] = {}
        for room_id in rooms:
            per_thread = counted.get(room_id, {})
            notifs, highlights = per_thread.get(MAIN_THREAD, (0, 0))
            threads = {
                thread_id: UnreadCounts(n, h).to_json()
                for thread_id, (n, h) in per_thread.items()
                if thread_id != MAIN_THREAD and (n or h)
            }
            result[room_id] = (UnreadCounts(notifs, highlights).to_json(), threads)
        return result

    # --- GET /notifications -----------------------------------------------------------

    async def get_notifications(
        self, user_id: str, *, from_token: str | None, limit: int | None, only: str | None
    ) -> JsonDict:
        before: int | None = None
        if from_token is not None:
            if not from_token.isdigit() or len(from_token) > 19:
                raise invalid_param(f"Invalid 'from' token: {from_token!r}")
            before = int(from_token)
        if limit is None:
            limit = DEFAULT_NOTIFICATIONS_LIMIT
        if limit < 0:
            raise invalid_param("'limit' must not be negative")
        limit = min(limit, MAX_NOTIFICATIONS_LIMIT)
        # Any room may have something for the user: let the queued work land first.
        await self.wait_for_pending(list(self._pending))
        rows = await self.store.get_notifications(
            user_id, before=before, limit=limit, only_highlight=only == "highlight"
        )
        if not rows:
            return {"notifications": []}
        events = await self.event_store.get_events([r.event_id for r in rows])
        positions = await self.store.read_positions(user_id, sorted({r.room_id for r in rows}))
        shown = [r for r in rows if r.event_id in events]
        serialized = await self.serializer.serialize_events([events[r.event_id] for r in shown])
        notifications = []
        for row, event_json in zip(shown, serialized, strict=True):
            read = positions.get(row.room_id, ReadPositions()).position(row.thread_id)
            notifications.append(
                {
                    "actions": row.actions,
                    "event": event_json,
                    "read": row.stream_ordering <= read,
                    "room_id": row.room_id,
                    "ts": row.received_ts,
                }
            )
        result: JsonDict = {"notifications": notifications}
        if len(rows) == limit:
            result["next_token"] = str(rows[-1].stream_ordering)
        return result


def _observe(work: defer.Deferred[None]) -> defer.Deferred[None]:
    """A Deferred that fires when ``work`` does, leaving ``work``'s result untouched for
    its other waiters."""
    observer: defer.Deferred[None] = defer.Deferred()

    def fire(result: object) -> object:
        observer.callback(None)
        return result

    work.addBoth(fire)
    return observer
