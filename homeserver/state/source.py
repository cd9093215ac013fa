"""Where state resolution gets its events and auth-graph facts from.

State resolution is pure: it asks a ``StateResolutionSource`` for events and for
auth-chain facts and never does I/O itself. The protocol is synchronous so that
storage can implement it inside a database thread; ``InMemoryEventSource`` serves
tests and callers that already hold every event.

An *auth chain* here follows the spec: the events reachable from the given events
through ``auth_events`` links, recursively (the starting events themselves are not
included unless one of them is reachable from another).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Protocol

from homeserver.events.model import Event


def auth_edges(event: Event) -> Sequence[str]:
    """The auth events of ``event`` as the auth graph sees them.

    From room version 12 the create event is no longer listed in ``auth_events``:
    the room ID names it. It is still an auth event in every sense that matters to
    state resolution (auth chains, the creators' power), so it is added back here.
    """
    ids = event.auth_event_ids
    room_version = event.room_version
    if room_version.room_id_is_create_event_hash and event.type != "m.room.create":
        room_id = event.get("room_id")
        if isinstance(room_id, str) and room_id.startswith("!"):
            create_id = "$" + room_id[1:]
            if create_id not in ids:
                return (*ids, create_id)
    return ids


def walk_auth_graph(
    source: StateResolutionSource,
    start: Iterable[str],
    *,
    include_start: bool,
    stop: AbstractSet[str] = frozenset(),
) -> set[str]:
    """Every event reachable from ``start`` along auth edges.

    The walk goes breadth first so that a source backed by a database is asked for
    one batch of events per level rather than one event at a time. It does not
    enter events in ``stop`` (nor report them); the caller uses that to prune the
    parts of the graph it already knows. Events the source does not have end
    their branch of the walk.
    """
    seen: set[str] = set()
    frontier: set[str] = set()
    for event_id in start:
        if event_id in stop:
            continue
        if include_start:
            seen.add(event_id)
        frontier.add(event_id)
    expanded: set[str] = set()
    while frontier:
        expanded |= frontier
        events = source.get_events(frontier)
        next_frontier: set[str] = set()
        for event in events.values():
            for auth_id in auth_edges(event):
                if auth_id in stop or auth_id in seen:
                    continue
                seen.add(auth_id)
                if auth_id not in expanded:
                    next_frontier.add(auth_id)
        frontier = next_frontier
    return seen


class StateResolutionSource(Protocol):
    """The events and auth-graph facts state resolution needs.

    Implementations provide ``get_events``; ``get_auth_chain``,
    ``get_auth_chain_difference`` and ``get_conflicted_subgraph`` have default
    implementations (inherited by classes that subclass this protocol) that walk
    the graph through ``get_events``. Storage should override them with its
    indexes.
    """

    def get_events(self, event_ids: Iterable[str]) -> Mapping[str, Event]:
        """The events with these IDs that the source has (missing ones omitted).

        Rejected events are returned too, with ``rejected_reason`` set.
        """
        ...

    def get_auth_chain(self, event_ids: Iterable[str]) -> set[str]:
        """The union of the auth chains of ``event_ids`` (see the module docstring)."""
        return walk_auth_graph(self, event_ids, include_start=False)

    def get_auth_chain_difference(self, state_sets: Sequence[set[str]]) -> set[str]:
        """The auth difference of the given state sets (sets of event IDs).

        The full auth chain of a state set is taken to include the set's own events
        (as Synapse does); the difference is the union of those chains minus their
        intersection.
        """
        if len(state_sets) < 2:
            return set()
        common = set(state_sets[0]).intersection(*state_sets[1:])
        # Everything reachable from an event in every state set is in every chain,
        # and so is everything below it: walk that part once, and use it to prune
        # the walks from the events that differ.
        shared = walk_auth_graph(self, common, include_start=True)
        chains = [
            walk_auth_graph(self, set(state_set) - common, include_start=True, stop=shared)
            for state_set in state_sets
        ]
        union = set().union(*chains)
        return union - set(chains[0]).intersection(*chains[1:])

    def get_conflicted_subgraph(self, conflicted: set[str]) -> set[str]:
        """The conflicted state subgraph of state resolution v2.1 (rooms/v12.md).

        The events lying on some auth path from one event of ``conflicted`` to
        another, endpoints included: the events that are both reachable from
        ``conflicted`` and from which ``conflicted`` is reachable. Every event of
        ``conflicted`` that the source has is included.
        """
        below = walk_auth_graph(self, conflicted, include_start=True)
        events = self.get_events(below)
        # reaches[e]: an event of `conflicted` is reachable from e (e itself counts).
        reaches: dict[str, bool] = {}
        for root in below:
            if root in reaches:
                continue
            # Iterative post-order walk: the auth graph can be deep.
            stack: list[tuple[str, bool]] = [(root, False)]
            while stack:
                event_id, children_done = stack.pop()
                if children_done:
                    event = events.get(event_id)
                    reaches[event_id] = event_id in conflicted or (
                        event is not None and any(reaches.get(a, False) for a in auth_edges(event))
                    )
                    continue
                if event_id in reaches:
                    continue
                reaches[event_id] = False  # provisional; also guards against cycles
                stack.append((event_id, True))
                event = events.get(event_id)
                if event is not None:
                    for auth_id in auth_edges(event):
                        if auth_id in below and auth_id not in reaches:
                            stack.append((auth_id, False))
        return {event_id for event_id in below if event_id in events and reaches[event_id]}


class InMemoryEventSource(StateResolutionSource):
    """A source over events held in memory (tests, and callers holding all events)."""

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self._events: dict[str, Event] = {}
        for event in events:
            self.add(event)

    def add(self, event: Event) -> None:
        self._events[event.event_id] = event

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._events

    def get_events(self, event_ids: Iterable[str]) -> dict[str, Event]:
        events = self._events
        return {event_id: events[event_id] for event_id in event_ids if event_id in events}
