"""Hearth's side of the comparison: its real protocol core, nothing mocked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from homeserver.auth import AuthError, check_auth_events_shape, check_auth_rules
from homeserver.auth import auth_types_for_event as hearth_auth_types
from homeserver.events.hashing import make_event
from homeserver.events.model import Event
from homeserver.room_versions import RoomVersion, get_room_version
from homeserver.state.resolve import resolve_state
from homeserver.state.source import InMemoryEventSource
from tests.differential.rooms import GeneratedEvent, StateKey


class HearthEvents:
    """Hearth ``Event`` objects for generated events.

    Hearth computes each event ID itself; where it differs from Synapse's the event is
    still filed under Synapse's ID (so the other comparisons go on) and the
    difference is kept in ``id_mismatches`` for the test to report.
    """

    def __init__(self, version: str) -> None:
        self.version = version
        self.room_version: RoomVersion = get_room_version(version)
        self._events: dict[str, Event] = {}
        self.id_mismatches: list[str] = []

    def add(self, generated: GeneratedEvent) -> Event:
        event = make_event(generated.pdu, self.room_version)
        if event.event_id != generated.event_id:
            self.id_mismatches.append(
                f"v{self.version}: Hearth computes event ID {event.event_id}, Synapse "
                f"{generated.event_id}, for {generated.pdu}"
            )
            event = Event(generated.pdu, self.room_version, generated.event_id)
        event.rejected_reason = "auth_error" if generated.rejected else None
        self._events[event.event_id] = event
        return event

    def __getitem__(self, event_id: str) -> Event:
        return self._events[event_id]

    def get(self, event_id: str) -> Event | None:
        return self._events.get(event_id)

    def subset(self, event_ids: Iterable[str]) -> list[Event]:
        return [self._events[e] for e in event_ids]

    def all(self) -> list[Event]:
        return list(self._events.values())


def resolve(
    events: HearthEvents,
    state_sets: Sequence[Mapping[StateKey, str]],
    *,
    readmit_rejected: bool = True,
) -> dict[StateKey, str]:
    source = InMemoryEventSource(events.all())
    return resolve_state(events.room_version, state_sets, source, readmit_rejected=readmit_rejected)


def check_auth(event: Event, events: HearthEvents) -> tuple[bool, str]:
    """Hearth's verdict on a received ``event`` against its own ``auth_events``.

    The rules considering the listed auth events, then the rules against the state
    those events make up; in v12 the create event (named by the room ID) is added to
    that state, as ``check_auth_rules`` asks of its caller.
    """
    try:
        listed = [events[e] for e in event.auth_event_ids]
        check_auth_events_shape(event, listed)
        state: dict[StateKey, Event] = {}
        if event.type != "m.room.create":
            state = {(e.type, e.state_key or ""): e for e in listed if e.state_key is not None}
            if event.room_version.room_id_is_create_event_hash:
                create = events.get("$" + event.room_id[1:])
                if create is not None:
                    state[("m.room.create", "")] = create
        check_auth_rules(event, state)
    except AuthError as e:
        return False, f"AuthError: {e.reason}"
    return True, "allowed"


def auth_types_for_event(event: Event) -> set[StateKey]:
    return set(
        hearth_auth_types(
            event.room_version, event.type, event.sender, event.state_key, event.content
        )
    )
