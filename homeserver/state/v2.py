"""State resolution v2 (room versions 2-11) and v2.1 (room version 12).

The algorithm is the one of ``rooms/v2.md`` ("State resolution"); v2.1 (``rooms/v12.md``)
adds the conflicted state subgraph to the full conflicted set and starts the first
iterative auth checks from an empty state map instead of the unconflicted state.

Choices where the spec is silent, made as Synapse makes them:

* A key missing from some state sets is conflicted (the spec's wording implies it).
* The full auth chain of a state set includes the set's own events (see
  ``StateResolutionSource.get_auth_chain_difference``).
* ``m.room.create`` counts as a power event, like power levels and join rules.
* The sender of ``m.room.create`` has power level 0 for the power ordering (the
  event has no auth events to look the level up in).
* Events the source does not have are left out of the full conflicted set; missing
  auth events are skipped.
* A cycle in the auth graph (only a malicious server could make one) leaves the
  events on it out of the power ordering rather than failing.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet

from homeserver.auth import AuthError
from homeserver.auth.rules import check_auth_rules, get_user_power_level
from homeserver.auth.selection import auth_types_for_event
from homeserver.events.model import Event, StateKey
from homeserver.room_versions import RoomVersion, StateResAlgorithm
from homeserver.state.event_cache import EventCache
from homeserver.state.source import StateResolutionSource, auth_edges

POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")
CREATE_KEY: StateKey = ("m.room.create", "")
_POWER_STATE_KEYS = frozenset({POWER_LEVELS_KEY, ("m.room.join_rules", ""), CREATE_KEY})


def resolve_v2(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    source: StateResolutionSource,
    *,
    readmit_rejected: bool = False,
) -> dict[StateKey, str]:
    """Resolve ``state_sets`` with state resolution v2, or v2.1 for v2.1 room versions.

    ``readmit_rejected``: by default a rejected event never enters the resolved state,
    as Synapse does and as the server-server spec's "Rejection" section says ("not
    updating with the rejected event where it is a state event"); every server in a
    room must reach the same answer, so we follow the network. ``True`` re-checks
    rejected events like any other, the reading of the room version text alone.
    """
    unconflicted, conflicted = separate(state_sets)
    if not conflicted:
        return unconflicted
    is_v2_1 = room_version.state_res is StateResAlgorithm.V2_1

    conflicted_ids: set[str] = set().union(*conflicted.values())
    full_conflicted = conflicted_ids | source.get_auth_chain_difference(
        [set(state_set.values()) for state_set in state_sets]
    )
    if is_v2_1:
        full_conflicted |= source.get_conflicted_subgraph(conflicted_ids)

    cache = EventCache(source)
    cache.prefetch(full_conflicted)
    full_conflicted = {
        event_id
        for event_id in full_conflicted
        if (event := cache.get(event_id)) is not None and event.is_state()
    }

    checker = _IterativeAuthChecker(room_version, cache, readmit_rejected)
    state: dict[StateKey, str] = {} if is_v2_1 else dict(unconflicted)

    power_events = [e for e in full_conflicted if is_power_event(cache[e])]
    sorted_power = reverse_topological_power_sort(
        room_version, power_events, full_conflicted, cache
    )
    checker.run(sorted_power, state)

    picked = set(sorted_power)
    leftover = [e for e in full_conflicted if e not in picked]
    checker.run(mainline_sort(leftover, state.get(POWER_LEVELS_KEY), cache), state)

    state.update(unconflicted)
    return state


def separate(
    state_sets: Sequence[Mapping[StateKey, str]],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """Split the state sets into the unconflicted state map and the conflicted state.

    A key is unconflicted when every state set maps it to the same event.
    """
    if not state_sets:
        return {}, {}
    first, rest = state_sets[0], state_sets[1:]
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    for key, event_id in first.items():
        if all(other.get(key) == event_id for other in rest):
            unconflicted[key] = event_id
        else:
            conflicted[key] = {event_id}
    for other in rest:
        for key, event_id in other.items():
            if key in unconflicted:
                continue
            conflicted.setdefault(key, set()).add(event_id)
    return unconflicted, conflicted


def is_power_event(event: Event) -> bool:
    """Power levels, join rules, create, and kicks and bans (rooms/v2.md "Power events")."""
    state_key = event.state_key
    if state_key is None:
        return False
    if (event.type, state_key) in _POWER_STATE_KEYS:
        return True
    return event.type == "m.room.member" and (
        event.membership in ("leave", "ban") and event.sender != state_key
    )


def sender_power_level(room_version: RoomVersion, event: Event, cache: EventCache) -> int:
    """The power level of the event's sender according to the event's own auth events."""
    if event.type == "m.room.create":
        return 0
    auth_events: dict[StateKey, Event] = {}
    for auth_id in auth_edges(event):
        auth_event = cache.get(auth_id)
        if auth_event is not None and auth_event.state_key is not None:
            key = auth_event.state_pair
            if key in (POWER_LEVELS_KEY, CREATE_KEY):
                auth_events[key] = auth_event
    return get_user_power_level(event.sender, auth_events, room_version)


def reverse_topological_power_sort(
    room_version: RoomVersion,
    event_ids: Iterable[str],
    full_conflicted: AbstractSet[str],
    cache: EventCache,
) -> list[str]:
    """``event_ids`` and their auth ancestors within ``full_conflicted``, in reverse
    topological power ordering (auth events first; ties by sender power level
    descending, then origin_server_ts, then event ID), by Kahn's algorithm."""
    graph: dict[str, list[str]] = {}
    stack = list(event_ids)
    while stack:
        event_id = stack.pop()
        if event_id in graph:
            continue
        event = cache.get(event_id)
        edges: list[str] = []
        if event is not None:
            edges = [a for a in dict.fromkeys(auth_edges(event)) if a in full_conflicted]
        graph[event_id] = edges
        stack.extend(a for a in edges if a not in graph)

    waiting_on = {event_id: len(edges) for event_id, edges in graph.items()}
    dependents: dict[str, list[str]] = {event_id: [] for event_id in graph}
    for event_id, edges in graph.items():
        for auth_id in edges:
            dependents[auth_id].append(event_id)

    def order_key(event_id: str) -> tuple[int, int, str]:
        event = cache[event_id]
        power = sender_power_level(room_version, event, cache)
        return (-power, event.origin_server_ts, event_id)

    ready = [(order_key(e), e) for e, count in waiting_on.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        _, event_id = heapq.heappop(ready)
        ordered.append(event_id)
        for dependent in dependents[event_id]:
            waiting_on[dependent] -= 1
            if waiting_on[dependent] == 0:
                heapq.heappush(ready, (order_key(dependent), dependent))
    return ordered


def _power_levels_auth_event(event: Event, cache: EventCache) -> str | None:
    """The ``m.room.power_levels`` event among the event's auth events, if any."""
    for auth_id in auth_edges(event):
        auth_event = cache.get(auth_id)
        if (
            auth_event is not None
            and auth_event.state_key == ""
            and auth_event.type == "m.room.power_levels"
        ):
            return auth_id
    return None


def mainline_sort(
    event_ids: Collection[str], power_levels_id: str | None, cache: EventCache
) -> list[str]:
    """``event_ids`` in the mainline ordering based on ``power_levels_id``."""
    if not event_ids:
        return []
    # Mainline position i of P_i, stored as a depth (n - i) so that larger is later and
    # "not on the mainline" (position infinity) is depth 0.
    mainline: list[str] = []
    seen_on_mainline: set[str] = set()
    current = power_levels_id
    while current is not None and current not in seen_on_mainline:
        mainline.append(current)
        seen_on_mainline.add(current)
        event = cache.get(current)
        current = _power_levels_auth_event(event, cache) if event is not None else None
    depth_of: dict[str, int] = {
        event_id: len(mainline) - position for position, event_id in enumerate(mainline)
    }

    def mainline_depth(event: Event) -> int:
        # Walk e_1, e_2, ... (the event itself is not a candidate) until one has a
        # known depth; every power levels event passed on the way shares that depth.
        path: list[str] = []
        on_path: set[str] = set()
        current = _power_levels_auth_event(event, cache)
        depth = 0
        while current is not None:
            known = depth_of.get(current)
            if known is not None:
                depth = known
                break
            if current in on_path:
                break
            path.append(current)
            on_path.add(current)
            pl_event = cache.get(current)
            current = _power_levels_auth_event(pl_event, cache) if pl_event else None
        for event_id in path:
            depth_of[event_id] = depth
        return depth

    keys: dict[str, tuple[int, int, str]] = {}
    for event_id in event_ids:
        event = cache[event_id]
        keys[event_id] = (mainline_depth(event), event.origin_server_ts, event_id)
    return sorted(event_ids, key=keys.__getitem__)


class _IterativeAuthChecker:
    """The iterative auth checks algorithm, over one resolution's events."""

    def __init__(self, room_version: RoomVersion, cache: EventCache, readmit: bool) -> None:
        self._room_version = room_version
        self._cache = cache
        self._readmit = readmit
        # Previously rejected events that passed the checks in this resolution: they
        # are part of the resolved state now, so later events may be authorised by them.
        self._admitted: set[str] = set()

    def _usable(self, event: Event) -> bool:
        return event.rejected_reason is None or event.event_id in self._admitted

    def run(self, event_ids: Sequence[str], state: dict[StateKey, str]) -> None:
        """Apply each event of ``event_ids`` that passes auth to ``state``, in order."""
        cache = self._cache
        room_version = self._room_version
        work: list[tuple[Event, set[StateKey]]] = []
        wanted: set[str] = set()
        for event_id in event_ids:
            event = cache[event_id]
            state_key = event.state_key
            if state_key is None:
                continue
            if event.rejected_reason is not None and not self._readmit:
                continue
            types = auth_types_for_event(
                room_version, event.type, event.sender, state_key, event.content
            )
            work.append((event, types))
            wanted.update(auth_edges(event))
            wanted.update(state[key] for key in types if key in state)
        cache.prefetch(wanted)

        for event, types in work:
            auth_events: dict[StateKey, Event] = {}
            for auth_id in auth_edges(event):
                auth_event = cache.get(auth_id)
                if auth_event is None or not self._usable(auth_event):
                    continue
                auth_state_key = auth_event.state_key
                if auth_state_key is None:
                    continue
                key = (auth_event.type, auth_state_key)
                if key in types or key == CREATE_KEY:
                    auth_events[key] = auth_event
            for key in types:
                state_id = state.get(key)
                if state_id is None:
                    continue
                state_event = cache.get(state_id)
                if state_event is not None and self._usable(state_event):
                    auth_events[key] = state_event
            try:
                check_auth_rules(event, auth_events)
            except AuthError:
                continue
            state[(event.type, event.state_key or "")] = event.event_id
            if event.rejected_reason is not None:
                self._admitted.add(event.event_id)
