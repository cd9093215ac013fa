"""Tells whoever is waiting (the /sync long-polls, the federation sender) that something moved.

Writers call ``notify`` (or ``on_new_room_events``) after their transaction has
committed, naming the stream, the position that is now safe to read up to, and the
rooms and users it concerns. A long-poll waits on exactly its user and its rooms, so a
send wakes the long-polls of that room's members only, never a scan of every waiter.

Streams are named as in ``homeserver.streams.StreamToken``: "room" for room events,
then "typing", "receipts", "account_data", ... as those streams are added.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from homeserver.events.model import Event

logger = logging.getLogger(__name__)

ROOM_STREAM = "room"


@dataclass(frozen=True)
class RoomEventsNotice:
    room_id: str
    events: Sequence[Event]
    # The room stream position every reader may now read up to.
    stream_position: int


Listener = Callable[[RoomEventsNotice], None]


class _Waiter:
    __slots__ = ("deferred", "keys", "since")

    def __init__(self, since: Mapping[str, int], keys: list[str]) -> None:
        self.deferred: defer.Deferred[bool] = defer.Deferred()
        self.since = since
        self.keys = keys


class Notifier:
    def __init__(self, reactor: Any = None) -> None:
        self._reactor = reactor
        self._listeners: list[Listener] = []
        # "room:<id>" / "user:<id>" -> the newest position seen per stream for that key.
        self._last: dict[str, dict[str, int]] = {}
        self._waiters: dict[str, set[_Waiter]] = {}

    def add_listener(self, listener: Listener) -> None:
        """Hear of every batch of new room events (e.g. the federation sender)."""
        self._listeners.append(listener)

    def on_new_room_events(self, notice: RoomEventsNotice) -> None:
        for listener in self._listeners:
            try:
                listener(notice)
            except Exception:
                # One broken listener must not stop the others from hearing of the event.
                logger.exception("notifier listener failed")
        # Membership events concern their target too: an invitee is not in the room yet.
        targets = [
            e.state_key for e in notice.events if e.type == "m.room.member" and e.state_key
        ]
        self.notify(ROOM_STREAM, notice.stream_position, rooms=[notice.room_id], users=targets)

    def notify(
        self,
        stream: str,
        position: int,
        *,
        rooms: Iterable[str] = (),
        users: Iterable[str] = (),
    ) -> None:
        """Record that ``stream`` reached ``position`` for these rooms and users; wake
        their waiters."""
        keys = [f"room:{room_id}" for room_id in rooms] + [f"user:{user_id}" for user_id in users]
        woken: set[_Waiter] = set()
        for key in keys:
            last = self._last.setdefault(key, {})
            if position > last.get(stream, -1):
                last[stream] = position
            woken.update(self._waiters.pop(key, ()))
        for waiter in woken:
            self._release(waiter, True)

    async def wait_for_change(
        self,
        user_id: str,
        room_ids: Iterable[str],
        since: Mapping[str, int],
        timeout_ms: int,
    ) -> bool:
        """Wait until something concerning ``user_id`` or ``room_ids`` moves past ``since``
        (stream name -> position), or ``timeout_ms`` passes. True if something moved.

        Returns at once if something already moved past ``since``, so a change that
        landed between the caller's read and this call is never missed.
        """
        keys = [f"user:{user_id}", *(f"room:{room_id}" for room_id in room_ids)]
        for key in keys:
            for stream, position in self._last.get(key, {}).items():
                if position > since.get(stream, 0):
                    return True
        if timeout_ms <= 0 or self._reactor is None:
            return False
        waiter = _Waiter(since, keys)
        for key in keys:
            self._waiters.setdefault(key, set()).add(waiter)
        timer = self._reactor.callLater(timeout_ms / 1000.0, self._release, waiter, False)
        try:
            return await waiter.deferred
        finally:
            if timer.active():
                timer.cancel()
            for key in keys:
                waiting = self._waiters.get(key)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._waiters[key]

    def wake_all(self) -> None:
        """Release every waiter now (shutdown: long-polls answer instead of holding it up)."""
        waiters = {w for ws in self._waiters.values() for w in ws}
        self._waiters.clear()
        for waiter in waiters:
            self._release(waiter, False)

    @staticmethod
    def _release(waiter: _Waiter, moved: bool) -> None:
        if not waiter.deferred.called:
            waiter.deferred.callback(moved)
