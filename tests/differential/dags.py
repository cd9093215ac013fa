"""Forked room DAGs for the state resolution comparison.

A case is built as a server would see it: a linear start (create, join, power levels,
join rules, some members and state), then 2-4 branches forking from points near the
end of that trunk, each with a few events that conflict with the other branches
(membership changes, power level changes, join rule changes, topics...). Sometimes two
branches are merged first (resolved, then continued from a merge event with both
tips as ``prev_events``), which puts earlier resolutions in the auth chains.

Which events enter a branch is decided by Synapse (the generator's oracle): an event
rejected against its branch's state is dropped, so every state set is the state after
an accepted event. The resolutions themselves are what is compared.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from synapse.events import EventBase

from tests.differential import synapse_oracle as oracle
from tests.differential.rooms import (
    Candidate,
    CandidateMaker,
    GeneratedEvent,
    Room,
    StateMap,
    new_room,
    opening,
)

Resolver = Callable[[list[StateMap]], StateMap]


@dataclass
class Branch:
    tip: list[str]
    state: StateMap


@dataclass
class DagCase:
    room: Room
    synapse_events: oracle.EventMap
    state_sets: list[StateMap]
    # Intermediate merges: (state sets, what Synapse resolved them to).
    merges: list[tuple[list[StateMap], StateMap]] = field(default_factory=list)
    # Branch events marked rejected after the fact (see ``DagBuilder.reject_some``).
    rejected: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"room {self.room.room_id} v{self.room.room_version}"]
        for event_id, event in self.room.events.items():
            pdu = event.pdu
            prev = [p[0] if isinstance(p, list) else p for p in pdu["prev_events"]]
            auth = [a[0] if isinstance(a, list) else a for a in pdu["auth_events"]]
            lines.append(
                f"  {event_id} {pdu['type']} sk={pdu.get('state_key')!r} "
                f"sender={pdu['sender']} depth={pdu['depth']} ts={pdu['origin_server_ts']}"
                f"{' REJECTED' if event.rejected else ''}\n"
                f"      content={pdu['content']}\n      prev={prev}\n      auth={auth}"
            )
        for i, state_set in enumerate(self.state_sets):
            lines.append(f"  state set {i}: {sorted(state_set.items())}")
        return "\n".join(lines)


class DagBuilder:
    def __init__(self, version: str, rng: random.Random) -> None:
        self.version = version
        self.rng = rng
        self.room = new_room(version, oracle.finish_pdu, rng, plain=rng.random() < 0.6)
        self.synapse = oracle.EventMap(version)
        self.synapse.add(self.room.create)
        self.maker = CandidateMaker(self.room, rng)
        self.merges: list[tuple[list[StateMap], StateMap]] = []

    def try_event(self, branch: Branch, candidate: Candidate) -> GeneratedEvent | None:
        """Add ``candidate`` on top of ``branch`` if Synapse accepts it against its state."""
        room = self.room
        auth = room.auth_event_ids(
            branch.state, candidate.type, candidate.sender, candidate.state_key, candidate.content
        )
        event = room.make_event(
            candidate.type,
            candidate.sender,
            candidate.content,
            state_key=candidate.state_key,
            prev_events=branch.tip,
            auth_events=auth,
            extra=candidate.extra,
            remember=False,
        )
        built = oracle.to_synapse(event, self.version)
        state_events: list[EventBase] = [self.synapse[e] for e in branch.state.values()]
        allowed_by_auth_events, _ = oracle.check_auth(built, _Overlay(self.synapse, built))
        allowed_by_state, _ = oracle.check_against_state(built, state_events)
        if not (allowed_by_auth_events and allowed_by_state):
            return None
        room.events[event.event_id] = event
        self.synapse.add(event)
        branch.tip = [event.event_id]
        if event.state_key is not None:
            branch.state = {**branch.state, (event.type, event.state_key): event.event_id}
        return event

    def grow(self, branch: Branch, count: int, attempts: int = 4) -> None:
        for _ in range(count):
            for _ in range(attempts):
                if self.try_event(branch, self.maker.candidate(branch.state, state_only=True)):
                    break

    def merge(self, a: Branch, b: Branch) -> Branch:
        state_sets = [a.state, b.state]
        resolved = oracle.resolve(self.version, self.room.room_id, state_sets, self.synapse.all())
        self.merges.append((state_sets, resolved))
        merged = Branch(a.tip + b.tip, resolved)
        for _ in range(6):
            if self.try_event(merged, self.maker.candidate(resolved, state_only=True)):
                return merged
        # Nothing passed: a message carries the merge instead.
        joined = [u for (t, u), _ in resolved.items() if t == "m.room.member"]
        sender = joined[0] if joined else self.room.create.sender
        candidate = Candidate("m.room.message", sender, {"body": "merge"})
        self.try_event(merged, candidate)
        return merged

    def build(self) -> DagCase:
        rng = self.rng
        trunk = Branch([self.room.create_id], {("m.room.create", ""): self.room.create_id})
        history = [(list(trunk.tip), dict(trunk.state))]
        for candidate in opening(self.room, rng):
            if self.try_event(trunk, candidate):
                history.append((list(trunk.tip), dict(trunk.state)))
        for _ in range(rng.randint(0, 6)):
            if self.try_event(trunk, self.maker.candidate(trunk.state, state_only=True)):
                history.append((list(trunk.tip), dict(trunk.state)))

        branches: list[Branch] = []
        for _ in range(rng.randint(2, 4)):
            tip, state = history[-1] if rng.random() < 0.6 else rng.choice(history[-5:])
            branch = Branch(list(tip), dict(state))
            self.grow(branch, rng.randint(1, 7))
            branches.append(branch)
        if len(branches) >= 3 or rng.random() < 0.3:
            a, b = rng.sample(range(len(branches)), 2)
            merged = self.merge(branches[a], branches[b])
            self.grow(merged, rng.randint(0, 3))
            branches = [br for i, br in enumerate(branches) if i not in (a, b)] + [merged]
            if len(branches) == 1:
                extra = Branch(list(history[-1][0]), dict(history[-1][1]))
                self.grow(extra, rng.randint(1, 5))
                branches.append(extra)
        case = DagCase(self.room, self.synapse, [b.state for b in branches], self.merges)
        if not self.merges and rng.random() < 0.35:
            case.rejected = self.reject_some(case, trunk_ids={e for e, _ in history_ids(history)})
        return case

    def reject_some(self, case: DagCase, trunk_ids: set[str]) -> list[str]:
        """Mark one or two branch events rejected, as if this server had rejected them
        against the state before them while another server accepted them (so they
        still sit in that server's state set). Only events no other event cites as an
        auth event are picked: an accepted event cannot have a rejected auth event.
        """
        cited = {
            a[0] if isinstance(a, list) else a
            for event in self.room.events.values()
            for a in event.pdu["auth_events"]
        }
        in_state = {e for state_set in case.state_sets for e in state_set.values()}
        excluded = trunk_ids | cited | {self.room.create_id}
        options = sorted(in_state - excluded)
        picked = self.rng.sample(options, min(len(options), self.rng.randint(1, 2)))
        for event_id in picked:
            self.room.events[event_id].rejected = True
            self.synapse.add(self.room.events[event_id])
        return picked


def history_ids(history: list[tuple[list[str], StateMap]]) -> list[tuple[str, int]]:
    return [(tip, i) for i, (tips, _) in enumerate(history) for tip in tips]


class _Overlay(oracle.EventMap):
    """An ``EventMap`` plus one event not yet recorded."""

    def __init__(self, base: oracle.EventMap, extra: EventBase) -> None:
        super().__init__(base.version)
        self._base = base
        self._extra = extra

    def get(self, event_id: str) -> EventBase | None:
        if event_id == self._extra.event_id:
            return self._extra
        return self._base.get(event_id)

    def __getitem__(self, event_id: str) -> EventBase:
        event = self.get(event_id)
        if event is None:
            raise KeyError(event_id)
        return event


def build_case(version: str, rng: random.Random) -> DagCase:
    return DagBuilder(version, rng).build()
