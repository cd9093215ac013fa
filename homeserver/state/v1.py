"""State resolution v1 (room version 1), as described in ``rooms/v1.md``.

Choices where the spec is silent or loose, made as Synapse makes them:

* A key present in only some state sets is not a conflict (the spec's "union").
* Conflicted events the source does not have are dropped; a key left with one
  event is taken as unconflicted, a key left with none is dropped.
* The auth events used for checks come from the unconflicted state (plus what has
  been resolved so far), never from the events' own ``auth_events``.
* Each conflicted ``m.room.member`` key is resolved against the state as it was
  after the join rules pass: member conflicts do not see each other's outcome.
* Join rules conflicts are those of any ``m.room.join_rules`` key.
* When no candidate of an "other" conflict passes auth, the last one in the order
  (lowest depth) is taken.
* Rejection flags are ignored: v1 rooms have no notion of re-authorising them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from homeserver.auth import AuthError
from homeserver.auth.rules import check_auth_rules
from homeserver.auth.selection import auth_types_for_event
from homeserver.events.model import Event, StateKey
from homeserver.room_versions import RoomVersion
from homeserver.state.event_cache import EventCache
from homeserver.state.source import StateResolutionSource

POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")
CREATE_KEY: StateKey = ("m.room.create", "")


def resolve_v1(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    source: StateResolutionSource,
) -> dict[StateKey, str]:
    if not state_sets:
        return {}
    if len(state_sets) == 1:
        return dict(state_sets[0])

    unconflicted, conflicted_ids = _separate(state_sets)
    cache = EventCache(source)
    cache.prefetch(event_id for ids in conflicted_ids.values() for event_id in ids)

    conflicted: dict[StateKey, list[Event]] = {}
    for key, ids in conflicted_ids.items():
        conflicted[key] = [event for i in ids if (event := cache.get(i)) is not None]

    auth_keys: set[StateKey] = set()
    for events in conflicted.values():
        for event in events:
            auth_keys |= _auth_types(room_version, event)
    cache.prefetch(unconflicted[key] for key in auth_keys if key in unconflicted)
    auth_state: dict[StateKey, Event] = {}
    for key in auth_keys:
        if key in unconflicted and (event := cache.get(unconflicted[key])) is not None:
            auth_state[key] = event

    for key, events in list(conflicted.items()):
        if len(events) <= 1:
            del conflicted[key]
            if events:
                unconflicted[key] = events[0].event_id

    resolved: dict[StateKey, Event] = {}
    if POWER_LEVELS_KEY in conflicted:
        resolved[POWER_LEVELS_KEY] = _resolve_auth_events(
            room_version, conflicted[POWER_LEVELS_KEY], auth_state
        )
    auth_state.update(resolved)
    for key, events in conflicted.items():
        if key[0] == "m.room.join_rules":
            resolved[key] = _resolve_auth_events(room_version, events, auth_state)
    auth_state.update(resolved)
    for key, events in conflicted.items():
        if key[0] == "m.room.member":
            resolved[key] = _resolve_auth_events(room_version, events, auth_state)
    auth_state.update(resolved)
    for key, events in conflicted.items():
        if key not in resolved:
            resolved[key] = _resolve_normal_events(room_version, events, auth_state)

    result = dict(unconflicted)
    for key, event in resolved.items():
        result[key] = event.event_id
    return result


def _separate(
    state_sets: Iterable[Mapping[StateKey, str]],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    for state_set in state_sets:
        for key, event_id in state_set.items():
            ids = conflicted.get(key)
            if ids is not None:
                ids.add(event_id)
                continue
            current = unconflicted.get(key)
            if current is None:
                unconflicted[key] = event_id
            elif current != event_id:
                conflicted[key] = {current, event_id}
                del unconflicted[key]
    return unconflicted, conflicted


def _auth_types(room_version: RoomVersion, event: Event) -> set[StateKey]:
    return auth_types_for_event(
        room_version, event.type, event.sender, event.state_key, event.content
    )


def _passes(room_version: RoomVersion, event: Event, state: Mapping[StateKey, Event]) -> bool:
    types = _auth_types(room_version, event)
    auth_events = {key: state[key] for key in types if key in state}
    try:
        check_auth_rules(event, auth_events)
    except AuthError:
        return False
    return True


def _sha1_order(events: Iterable[Event]) -> list[Event]:
    """Highest depth first, then lowest sha1(event_id)."""

    def key(event: Event) -> tuple[int, str]:
        digest = hashlib.sha1(event.event_id.encode("utf-8")).hexdigest()
        return (-event.depth, digest)

    return sorted(events, key=key)


def _resolve_auth_events(
    room_version: RoomVersion, events: list[Event], auth_state: Mapping[StateKey, Event]
) -> Event:
    """Walk the candidates from lowest depth up, each one authorised by the previous."""
    ordered = _sha1_order(events)
    ordered.reverse()
    keys: set[StateKey] = set()
    for event in events:
        keys |= _auth_types(room_version, event)
    state = {key: auth_state[key] for key in keys if key in auth_state}
    accepted = ordered[0]
    for event in ordered[1:]:
        state[(accepted.type, accepted.state_key or "")] = accepted
        if not _passes(room_version, event, state):
            return accepted
        accepted = event
    return accepted


def _resolve_normal_events(
    room_version: RoomVersion, events: list[Event], auth_state: Mapping[StateKey, Event]
) -> Event:
    ordered = _sha1_order(events)
    for event in ordered:
        if _passes(room_version, event, auth_state):
            return event
    return ordered[-1]
