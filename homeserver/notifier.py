"""Tells whoever is waiting (the /sync long-polls, the federation sender) that a room moved.

Writers call ``on_new_room_events`` after their transaction has committed, with the
stream position that is now safe to read up to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from homeserver.events.model import Event

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoomEventsNotice:
    room_id: str
    events: Sequence[Event]
    # The room stream position every reader may now read up to.
    stream_position: int


Listener = Callable[[RoomEventsNotice], None]


class Notifier:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def on_new_room_events(self, notice: RoomEventsNotice) -> None:
        for listener in self._listeners:
            try:
                listener(notice)
            except Exception:
                # One broken listener must not stop the others from hearing of the event.
                logger.exception("notifier listener failed")
