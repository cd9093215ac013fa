"""A per-resolution memo of the events fetched from a ``StateResolutionSource``."""

from __future__ import annotations

from collections.abc import Iterable

from homeserver.events.model import Event
from homeserver.state.source import StateResolutionSource


class EventCache:
    """Fetches events in batches and remembers them, and which ones are missing.

    Lives for one resolution only, so it never needs invalidating.
    """

    __slots__ = ("_events", "_missing", "_source")

    def __init__(self, source: StateResolutionSource) -> None:
        self._source = source
        self._events: dict[str, Event] = {}
        self._missing: set[str] = set()

    def prefetch(self, event_ids: Iterable[str]) -> None:
        events = self._events
        missing = self._missing
        wanted = {i for i in event_ids if i not in events and i not in missing}
        if not wanted:
            return
        found = self._source.get_events(wanted)
        events.update(found)
        missing.update(wanted.difference(found))

    def get(self, event_id: str) -> Event | None:
        event = self._events.get(event_id)
        if event is None and event_id not in self._missing:
            self.prefetch((event_id,))
            event = self._events.get(event_id)
        return event

    def __getitem__(self, event_id: str) -> Event:
        event = self.get(event_id)
        if event is None:
            raise KeyError(event_id)
        return event

    def __contains__(self, event_id: str) -> bool:
        return self.get(event_id) is not None
