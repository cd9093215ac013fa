"""Synapse's own Python code, used as the reference oracle (a test-only dependency).

Only the oracle's plumbing is faked: a dict stands in for Synapse's event store, and
a no-op clock for its reactor. Synapse's coroutines never really suspend on those
fakes, so they are run to completion by stepping them once (``run``).

Nothing here is copied from Synapse: it calls the installed ``synapse`` package.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import Any

from synapse import event_auth
from synapse.api.errors import SynapseError
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, StateResolutionVersions
from synapse.crypto.event_signing import add_hashes_and_signatures, compute_event_signature
from synapse.events import EventBase, make_event_from_dict
from synapse.state import v1 as state_v1
from synapse.state import v2 as state_v2
from synapse.storage.databases.main.event_federation import StateDifference

from tests.differential.rooms import (
    GeneratedEvent,
    JsonDict,
    StateKey,
    server_of,
    server_signing_key,
)

# Synapse logs every rejected event at INFO/WARNING; thousands of them drown pytest's output.
logging.getLogger("synapse").setLevel(logging.CRITICAL)


def room_version(identifier: str) -> RoomVersion:
    return KNOWN_ROOM_VERSIONS[identifier]


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a Synapse coroutine that does no real I/O to completion."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("the oracle coroutine waited on something: a fake is incomplete")


# --- building events ----------------------------------------------------------------


def finish_pdu(pdu: JsonDict, version: str) -> tuple[JsonDict, str]:
    """Content hash and signatures (Synapse's signing code), then the event ID.

    Signed by the sender's server and, for restricted joins, by the authorising
    user's server, as a real PDU would be.
    """
    rv = room_version(version)
    sender_server = server_of(str(pdu["sender"]))
    add_hashes_and_signatures(rv, pdu, sender_server, server_signing_key(sender_server))
    content = pdu.get("content")
    authoriser = None
    if isinstance(content, dict):
        authoriser = content.get("join_authorised_via_users_server")
    if isinstance(authoriser, str) and server_of(authoriser) not in (sender_server, ""):
        server = server_of(authoriser)
        extra = compute_event_signature(rv, pdu, server, server_signing_key(server))
        pdu["signatures"].update(extra)
    event = make_event_from_dict(pdu, rv)
    return pdu, event.event_id


def to_synapse(event: GeneratedEvent, version: str) -> EventBase:
    return make_event_from_dict(
        event.pdu, room_version(version), rejected_reason="auth_error" if event.rejected else None
    )


class EventMap:
    """Synapse ``EventBase`` objects for generated events, built once each."""

    def __init__(self, version: str) -> None:
        self.version = version
        self._events: dict[str, EventBase] = {}

    def add(self, event: GeneratedEvent) -> EventBase:
        built = to_synapse(event, self.version)
        self._events[event.event_id] = built
        return built

    def __getitem__(self, event_id: str) -> EventBase:
        return self._events[event_id]

    def get(self, event_id: str) -> EventBase | None:
        return self._events.get(event_id)

    def all(self) -> dict[str, EventBase]:
        return dict(self._events)


class _FakeEventStore:
    """The little of Synapse's event store that the auth checks ask for."""

    def __init__(self, events: EventMap) -> None:
        self._events = events

    async def get_events(
        self,
        event_ids: Iterable[str],
        redact_behaviour: Any = None,
        get_prev_content: bool = False,
        allow_rejected: bool = False,
    ) -> dict[str, EventBase]:
        found = {}
        for event_id in event_ids:
            event = self._events.get(event_id)
            if event is not None and (allow_rejected or not event.rejected_reason):
                found[event_id] = event
        return found


# --- event authorisation --------------------------------------------------------------


def check_auth(event: EventBase, events: EventMap) -> tuple[bool, str]:
    """Synapse's verdict on ``event`` against its own ``auth_events``.

    ``validate_event_for_room_version`` (run on every received PDU before auth: it
    holds the rule on the restricted-join authoriser's signature), the
    state-independent rules (create event rules, the shape of auth_events), then
    the state-dependent rules with the event's auth events as the state, as Synapse's
    federation handler does for a received PDU. Returns (allowed, reason).
    """
    try:
        # Size limits and which servers must have signed (the signatures themselves
        # are valid: the generator made them).
        event_auth.validate_event_for_room_version(event)
        run(event_auth.check_state_independent_auth_rules(_FakeEventStore(events), event))
        if event.type != "m.room.create":
            auth = [events[e] for e in event.auth_event_ids()]
            event_auth.check_state_dependent_auth_rules(event, auth)
    except SynapseError as e:
        return False, f"{type(e).__name__}: {e.msg}"
    except Exception as e:  # Synapse's unguarded paths (int("x") ...)
        return False, f"CRASH {type(e).__name__}: {e}"
    return True, "allowed"


def check_against_state(event: EventBase, state: Iterable[EventBase]) -> tuple[bool, str]:
    """Synapse's state-dependent rules only, against the given state events."""
    try:
        event_auth.check_state_dependent_auth_rules(event, list(state))
    except SynapseError as e:
        return False, f"{type(e).__name__}: {e.msg}"
    except Exception as e:
        return False, f"CRASH {type(e).__name__}: {e}"
    return True, "allowed"


def auth_types_for_event(event: EventBase) -> set[StateKey]:
    return set(event_auth.auth_types_for_event(event.room_version, event))


# --- state resolution -----------------------------------------------------------------


class _NoSleepClock:
    async def sleep(self, duration: Any) -> None:
        return None


class _UnpersistedStateResStore:
    """Synapse's state-res store with nothing persisted.

    Every event is handed to Synapse in ``event_map`` as "unpersisted", so Synapse's own
    Python code computes the auth chain difference and the v2.1 conflicted subgraph
    (the in-memory path it uses for events being persisted). What is left for the
    store is the part for persisted events: there are none.
    """

    def __init__(self, events: Mapping[str, EventBase]) -> None:
        self._events = events

    async def get_events(
        self, event_ids: Iterable[str], allow_rejected: bool = False
    ) -> dict[str, EventBase]:
        return {e: self._events[e] for e in event_ids if e in self._events}

    async def get_auth_chain_difference(
        self,
        room_id: str,
        state_sets: list[set[str]],
        conflicted_state: set[str] | None,
        additional_backwards_reachable_conflicted_events: set[str] | None,
    ) -> StateDifference:
        assert all(not s for s in state_sets), "every event should be unpersisted"
        return StateDifference(
            auth_difference=set(),
            conflicted_subgraph=set() if conflicted_state is not None else None,
        )


def resolve(
    version: str,
    room_id: str,
    state_sets: Sequence[Mapping[StateKey, str]],
    events: Mapping[str, EventBase],
) -> dict[StateKey, str]:
    """Synapse's state resolution (v1, v2 or v2.1 as the room version says)."""
    rv = room_version(version)
    if rv.state_res == StateResolutionVersions.V1:

        async def factory(event_ids: Iterable[str]) -> dict[str, EventBase]:
            return {e: events[e] for e in event_ids if e in events}

        result = run(
            state_v1.resolve_events_with_store(room_id, rv, list(state_sets), None, factory)
        )
    else:
        result = run(
            state_v2.resolve_events_with_store(
                _NoSleepClock(),
                room_id,
                rv,
                list(state_sets),
                dict(events),
                _UnpersistedStateResStore(events),
            )
        )
    return dict(result)
