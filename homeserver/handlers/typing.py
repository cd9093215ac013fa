"""Typing notifications: who is typing in which room, held in memory only.

As in Synapse, the typing stream's position starts at 0 in each process: typing is
ephemeral, and a client whose token is from an earlier process is simply told the
current state of every room that changes from now on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from homeserver.errors import forbidden
from homeserver.events.model import JsonDict
from homeserver.notifier import Notifier, RoomEventsNotice
from homeserver.streams import StreamToken
from homeserver.types import Requester
from storage.events import EventStore

logger = logging.getLogger(__name__)

STREAM = "typing"
DEFAULT_TIMEOUT_MS = 30_000
# How long another server's "typing" lasts unless it says so again (Synapse's value).
FEDERATION_TIMEOUT_MS = 60_000
# Synapse's ceiling, so a client cannot leave itself "typing" for hours.
MAX_TIMEOUT_MS = 120_000


async def is_joined(store: EventStore, room_id: str, user_id: str) -> bool:
    member = await store.get_current_state_event(room_id, "m.room.member", user_id)
    return member is not None and member.membership == "join"


class TypingHandler:
    name = STREAM

    def __init__(
        self,
        *,
        event_store: EventStore,
        notifier: Notifier,
        clock: Any,
        bump_active: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._store = event_store
        self._notifier = notifier
        self._clock = clock  # anything with callLater (the reactor)
        self._bump_active = bump_active
        self._position = 0
        # room_id -> {user_id: timer that ends their typing}
        self._typing: dict[str, dict[str, Any]] = {}
        # room_id -> the position of the room's last change
        self._changed_at: dict[str, int] = {}
        # Told (room_id, user_id, typing, timeout_ms) of every set_typing and every expiry,
        # so federation can tell the room's other servers.
        self.typing_listener: Callable[[str, str, bool, int], None] | None = None
        # A member who leaves stops typing there.
        notifier.add_listener(self._on_room_events)

    def current_position(self) -> int:
        return self._position

    def stop(self) -> None:
        """Cancel every typing timer (shutdown)."""
        for room in self._typing.values():
            for timer in room.values():
                if timer.active():
                    timer.cancel()
        self._typing.clear()

    async def set_typing(
        self,
        requester: Requester,
        room_id: str,
        user_id: str,
        typing: bool,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
    ) -> None:
        if user_id != requester.user_id:
            raise forbidden("Cannot set another user's typing state")
        if not await is_joined(self._store, room_id, user_id):
            raise forbidden(f"User {user_id} not in room {room_id}")
        if self._bump_active is not None:
            await self._bump_active(user_id)
        timeout_ms = max(0, min(timeout_ms, MAX_TIMEOUT_MS))
        if typing:
            self._start(room_id, user_id, timeout_ms)
        else:
            self._stop(room_id, user_id)
        if self.typing_listener is not None:
            self.typing_listener(room_id, user_id, typing, timeout_ms)

    async def set_remote_typing(
        self, room_id: str, user_id: str, typing: bool, timeout_ms: int = FEDERATION_TIMEOUT_MS
    ) -> bool:
        """Another server says its user is (not) typing; ignored unless they are joined."""
        if not await is_joined(self._store, room_id, user_id):
            return False
        if typing:
            self._start(room_id, user_id, timeout_ms)
        else:
            self._stop(room_id, user_id)
        return True

    def _start(self, room_id: str, user_id: str, timeout_ms: int) -> None:
        room = self._typing.setdefault(room_id, {})
        timer = room.get(user_id)
        if timer is not None:
            # Already typing: push the end back; nobody needs telling again.
            if timer.active():
                timer.cancel()
            room[user_id] = self._clock.callLater(
                timeout_ms / 1000.0, self._expire, room_id, user_id
            )
            return
        room[user_id] = self._clock.callLater(timeout_ms / 1000.0, self._expire, room_id, user_id)
        self._changed(room_id)

    def _stop(self, room_id: str, user_id: str) -> None:
        room = self._typing.get(room_id)
        if room is None or user_id not in room:
            return
        timer = room.pop(user_id)
        if timer.active():
            timer.cancel()
        if not room:
            del self._typing[room_id]
        self._changed(room_id)

    def _expire(self, room_id: str, user_id: str) -> None:
        room = self._typing.get(room_id)
        if room is None or user_id not in room:
            return
        del room[user_id]
        if not room:
            del self._typing[room_id]
        self._changed(room_id)
        if self.typing_listener is not None:
            self.typing_listener(room_id, user_id, False, 0)

    def _changed(self, room_id: str) -> None:
        self._position += 1
        self._changed_at[room_id] = self._position
        self._notifier.notify(STREAM, self._position, rooms=[room_id])

    def _on_room_events(self, notice: RoomEventsNotice) -> None:
        room = self._typing.get(notice.room_id)
        if not room:
            return
        for event in notice.events:
            if (
                event.type == "m.room.member"
                and event.state_key in room
                and event.membership != "join"
            ):
                self._stop(notice.room_id, event.state_key)

    # --- for /sync ----------------------------------------------------------------------

    def get_typing_events(
        self, room_ids: Iterable[str], since_position: int | None
    ) -> dict[str, JsonDict]:
        """``m.typing`` events for the rooms of ``room_ids`` whose typing set changed after
        ``since_position``; with no position (or 0, or one from an earlier process), for
        every such room where someone is typing."""
        since = since_position or 0
        if since > self._position:
            since = 0
        events: dict[str, JsonDict] = {}
        for room_id in room_ids:
            changed_at = self._changed_at.get(room_id)
            if changed_at is None or changed_at <= since:
                continue
            user_ids = sorted(self._typing.get(room_id, {}))
            if since == 0 and not user_ids:
                continue
            events[room_id] = {"type": "m.typing", "content": {"user_ids": user_ids}}
        return events

    async def sync_ephemeral(
        self, user_id: str, room_ids: Sequence[str], since: StreamToken | None
    ) -> dict[str, list[JsonDict]]:
        """SyncSections.ephemeral provider: get_typing_events at the token's typing part."""
        position = dict(since.extra).get(STREAM, 0) if since is not None else None
        return {room: [event] for room, event in self.get_typing_events(room_ids, position).items()}
