"""Protocol core benchmark: Hearth and Synapse's Python code paths, same inputs, same run.

    .venv/bin/python -m tests.bench.protocol_bench [--quick] [--events N] [--state N]

Measures, for both implementations:

* events hashed + signed per second (content hash, signature, event ID): Hearth's
  ``events.signing.sign_event`` + ``events.hashing.make_event``; Synapse's
  ``crypto.event_signing.add_hashes_and_signatures`` + ``make_event_from_dict``;
* events verified per second (signature of the sender's server + content hash), as
  Synapse's keyring does it per event: ``VerifyJsonRequest.from_event`` (redaction),
  ``signedjson.sign.verify_signed_json``, ``check_event_content_hash``; Hearth's
  ``events.signing.verify_event``;
* auth checks per second (a mix of allowed and rejected events from a generated
  room): ``auth.check_auth_rules`` against ``event_auth.check_state_dependent_auth_rules``;
* state resolution of a room with 10,000 state events and 200 conflicted entries,
  for v10 (state res v2) and v12 (v2.1): ``state.resolve.resolve_state`` with an
  ``InMemoryEventSource`` against ``synapse.state.v2.resolve_events_with_store`` with
  an in-memory store (its auth chain difference and conflicted subgraph are computed
  by walking the auth graph in Python, as Hearth's in-memory source does; Synapse's
  database would use its chain cover index instead, so the store's share is shown).

Each figure is the best of a few repeats. Prints one table with the ratios.
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from signedjson.key import get_verify_key
from signedjson.sign import verify_signed_json
from synapse import event_auth
from synapse.api.errors import SynapseError
from synapse.crypto.event_signing import add_hashes_and_signatures, check_event_content_hash
from synapse.crypto.keyring import VerifyJsonRequest
from synapse.events import EventBase, make_event_from_dict
from synapse.state import v2 as synapse_v2
from synapse.storage.databases.main.event_federation import StateDifference

from homeserver.auth import AuthError, check_auth_rules
from homeserver.events.hashing import make_event
from homeserver.events.model import Event
from homeserver.events.signing import sign_event, verify_event, verify_key_for
from homeserver.room_versions import get_room_version
from homeserver.state.resolve import resolve_state
from homeserver.state.source import InMemoryEventSource
from tests.differential import synapse_oracle as oracle
from tests.differential.rooms import (
    CandidateMaker,
    GeneratedEvent,
    Room,
    StateMap,
    new_room,
    opening,
    server_signing_key,
)

SERVER = "a.test"


def best_of(repeats: int, run: Callable[[], Any]) -> float:
    """The shortest wall time of ``repeats`` calls of ``run``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


@dataclass
class Row:
    name: str
    unit: str
    hearth: float
    synapse: float
    higher_is_better: bool
    note: str = ""

    @property
    def speedup(self) -> float:
        if self.higher_is_better:
            return self.hearth / self.synapse
        return self.synapse / self.hearth


# --- a realistic room for the per-event benchmarks -----------------------------------


def _plain_finisher(pdu: dict[str, Any], version: str) -> tuple[dict[str, Any], str]:
    """Unsigned PDUs with a placeholder hash: the benchmarks sign them themselves."""
    pdu.setdefault("hashes", {"sha256": "A" * 43})
    pdu.setdefault("signatures", {})
    return pdu, make_event_from_dict(pdu, oracle.room_version(version)).event_id


def generated_room(version: str, steps: int, rng: random.Random) -> tuple[Room, list[str]]:
    """A room grown through Synapse's auth checks; returns it and the order of events."""
    room = new_room(version, oracle.finish_pdu, rng, plain=True)
    events = oracle.EventMap(version)
    events.add(room.create)
    state: StateMap = {("m.room.create", ""): room.create_id}
    tip = [room.create_id]
    order = [room.create_id]
    # Well-formed content only: malformed events are for the differential tests.
    maker = CandidateMaker(room, rng, odd_content=False)
    script = opening(room, rng)
    for _ in range(steps):
        candidate = script.pop(0) if script else maker.candidate(state)
        auth = room.auth_event_ids(
            state, candidate.type, candidate.sender, candidate.state_key, candidate.content
        )
        if room.number >= 12:
            auth = [a for a in auth if a != room.create_id]
        event = room.make_event(
            candidate.type,
            candidate.sender,
            candidate.content,
            state_key=candidate.state_key,
            prev_events=tip,
            auth_events=auth if candidate.type != "m.room.create" else [],
            extra=candidate.extra,
        )
        order.append(event.event_id)
        built = events.add(event)
        if oracle.check_auth(built, events)[0]:
            tip = [event.event_id]
            if event.state_key is not None:
                state[(event.type, event.state_key)] = event.event_id
        else:
            event.rejected = True
            events.add(event)
    return room, order


def _template(pdu: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pdu.items() if k not in ("hashes", "signatures", "unsigned")}


# --- hash + sign, verify ----------------------------------------------------------------


def bench_sign(version: str, templates: list[dict[str, Any]], repeats: int) -> Row:
    hearth_rv = get_room_version(version)
    synapse_rv = oracle.room_version(version)
    key = server_signing_key(SERVER)

    def hearth() -> None:
        for template in templates:
            pdu = copy.deepcopy(template)
            sign_event(pdu, SERVER, key, hearth_rv)
            make_event(pdu, hearth_rv)

    def synapse() -> None:
        for template in templates:
            pdu = copy.deepcopy(template)
            add_hashes_and_signatures(synapse_rv, pdu, SERVER, key)
            make_event_from_dict(pdu, synapse_rv).event_id  # noqa: B018 - computes the ID

    n = len(templates)
    return Row(
        f"hash + sign + event ID (v{version})",
        "events/s",
        n / best_of(repeats, hearth),
        n / best_of(repeats, synapse),
        True,
    )


def bench_verify(version: str, templates: list[dict[str, Any]], repeats: int) -> Row:
    hearth_rv = get_room_version(version)
    synapse_rv = oracle.room_version(version)
    key = server_signing_key(SERVER)
    verify_key = get_verify_key(key)
    signed: list[dict[str, Any]] = []
    for template in templates:
        pdu = copy.deepcopy(template)
        # One signing server, as in the keyring's batches.
        pdu["sender"] = f"@bench:{SERVER}"
        if "join_authorised_via_users_server" in pdu["content"]:
            pdu["content"] = {**pdu["content"], "join_authorised_via_users_server": pdu["sender"]}
        add_hashes_and_signatures(synapse_rv, pdu, SERVER, key)
        signed.append(pdu)
    hearth_events = [make_event(copy.deepcopy(p), hearth_rv) for p in signed]
    synapse_events = [make_event_from_dict(p, synapse_rv) for p in signed]
    keys = {(SERVER, f"ed25519:{key.version}"): verify_key_for(key, 2**62)}

    def hearth() -> None:
        for event in hearth_events:
            if verify_event(event, keys) is not event:
                raise AssertionError("content hash mismatch")

    def synapse() -> None:
        for event in synapse_events:
            request = VerifyJsonRequest.from_event(SERVER, event, 0)
            verify_signed_json(request.get_json_object(), SERVER, verify_key)
            if not check_event_content_hash(event):
                raise AssertionError("content hash mismatch")

    n = len(signed)
    return Row(
        f"verify signature + hash (v{version})",
        "events/s",
        n / best_of(repeats, hearth),
        n / best_of(repeats, synapse),
        True,
    )


# --- auth checks ------------------------------------------------------------------------


def bench_auth(version: str, room: Room, order: list[str], repeats: int) -> Row:
    hearth_rv = get_room_version(version)
    synapse_rv = oracle.room_version(version)
    hearth_events = {e: make_event(room.events[e].pdu, hearth_rv) for e in order}
    synapse_events = {e: make_event_from_dict(room.events[e].pdu, synapse_rv) for e in order}
    create_h = hearth_events[room.create_id]
    create_s = synapse_events[room.create_id]
    hearth_cases: list[tuple[Event, dict[tuple[str, str], Event]]] = []
    synapse_cases: list[tuple[EventBase, list[EventBase]]] = []
    for event_id in order[1:]:
        event = room.events[event_id]
        auth_ids = [a[0] if isinstance(a, list) else a for a in event.pdu["auth_events"]]
        h_auth = {
            (hearth_events[a].type, hearth_events[a].state_key or ""): hearth_events[a]
            for a in auth_ids
        }
        h_auth[("m.room.create", "")] = create_h
        s_auth = [synapse_events[a] for a in auth_ids]
        if all(s.event_id != create_s.event_id for s in s_auth):
            s_auth.append(create_s)
        hearth_cases.append((hearth_events[event_id], h_auth))
        synapse_cases.append((synapse_events[event_id], s_auth))

    def hearth() -> None:
        for event, auth in hearth_cases:
            try:
                check_auth_rules(event, auth)
            except AuthError:
                pass

    def synapse() -> None:
        for event, auth_list in synapse_cases:
            try:
                event_auth.check_state_dependent_auth_rules(event, auth_list)
            except SynapseError:
                pass
            except (KeyError, ValueError, TypeError):
                pass  # Synapse's unguarded paths on odd content

    n = len(hearth_cases)
    return Row(
        f"auth checks (v{version}, mixed allow/reject)",
        "checks/s",
        n / best_of(repeats, hearth),
        n / best_of(repeats, synapse),
        True,
    )


# --- state resolution --------------------------------------------------------------------


@dataclass
class BigRoom:
    version: str
    room: Room
    state_sets: list[StateMap]
    conflicted: int


def big_room(version: str, state_events: int, conflicted_target: int) -> BigRoom:
    """A room with ``state_events`` state events and two branches that conflict on
    ``conflicted_target`` state entries: one branch changes power levels and kicks
    members, the other changes the join rules and members' display names; both set
    custom state. Built without auth checks (every event is valid by construction)."""
    rng = random.Random(f"bench:{version}")
    room = new_room(version, _plain_finisher, rng, plain=True, creator=f"@admin:{SERVER}")
    creator = room.create.sender
    number = room.number
    create_in_auth = [] if number >= 12 else [room.create_id]

    def add(
        state: StateMap,
        tip: list[str],
        event_type: str,
        sender: str,
        content: dict[str, Any],
        state_key: str,
    ) -> GeneratedEvent:
        auth = room.auth_event_ids(state, event_type, sender, state_key, content)
        if number >= 12:
            auth = [a for a in auth if a != room.create_id]
        event = room.make_event(
            event_type, sender, content, state_key=state_key, prev_events=tip, auth_events=auth
        )
        state[(event_type, state_key)] = event.event_id
        tip[:] = [event.event_id]
        return event

    state: StateMap = {("m.room.create", ""): room.create_id}
    tip = [room.create_id]
    add(state, tip, "m.room.member", creator, {"membership": "join"}, creator)
    users = {} if number >= 12 else {creator: 100}
    add(state, tip, "m.room.power_levels", creator, {"users": users}, "")
    add(state, tip, "m.room.join_rules", creator, {"join_rule": "public"}, "")
    members = [f"@m{i}:{SERVER}" for i in range(state_events // 5)]
    for member in members:
        add(state, tip, "m.room.member", member, {"membership": "join"}, member)
    custom = 0
    while len(state) < state_events:
        add(state, tip, "org.example.state", creator, {"n": custom}, f"k{custom}")
        custom += 1
    del create_in_auth

    # Branch A: power levels, kicks, custom state; branch B: join rule, display
    # names, custom state. The overlap makes both kinds of conflicts.
    third = max(1, (conflicted_target - 2) // 4)
    state_a, tip_a = dict(state), list(tip)
    state_b, tip_b = dict(state), list(tip)
    promoted = {**users, members[0]: 50}
    add(state_a, tip_a, "m.room.power_levels", creator, {"users": promoted}, "")
    for member in members[: 2 * third]:
        add(state_a, tip_a, "m.room.member", creator, {"membership": "leave"}, member)
    add(state_b, tip_b, "m.room.join_rules", creator, {"join_rule": "invite"}, "")
    for member in members[third : 3 * third]:
        add(
            state_b,
            tip_b,
            "m.room.member",
            member,
            {"membership": "join", "displayname": "B"},
            member,
        )
    remaining = conflicted_target - 2 - 3 * third
    for i in range(remaining):
        branch_state, branch_tip = (state_a, tip_a) if i % 2 else (state_b, tip_b)
        add(branch_state, branch_tip, "org.example.state", creator, {"n": -i}, f"k{i}")
    conflicted = sum(
        1 for key in set(state_a) | set(state_b) if state_a.get(key) != state_b.get(key)
    )
    return BigRoom(version, room, [state_a, state_b], conflicted)


class _SynapseStore:
    """Synapse's ``StateResolutionStore`` over events in memory (timed separately)."""

    def __init__(self, events: dict[str, EventBase]) -> None:
        self.events = events
        self.seconds = 0.0

    async def get_events(
        self, event_ids: Iterable[str], allow_rejected: bool = False
    ) -> dict[str, EventBase]:
        return {e: self.events[e] for e in event_ids if e in self.events}

    def _chain(self, start: Iterable[str]) -> set[str]:
        seen = set(start)
        stack = list(seen)
        while stack:
            for auth_id in self.events[stack.pop()].auth_event_ids():
                if auth_id not in seen:
                    seen.add(auth_id)
                    stack.append(auth_id)
        return seen

    async def get_auth_chain_difference(
        self,
        room_id: str,
        state_sets: list[set[str]],
        conflicted_state: set[str] | None,
        additional_backwards_reachable_conflicted_events: set[str] | None,
    ) -> StateDifference:
        start = time.perf_counter()
        common = set(state_sets[0]).intersection(*state_sets[1:])
        shared = self._chain(common)
        chains = [self._chain(s - common) | shared for s in state_sets]
        difference = set().union(*chains) - chains[0].intersection(*chains[1:])
        subgraph: set[str] | None = None
        if conflicted_state is not None:
            below = self._chain(conflicted_state)
            reaches: dict[str, bool] = {}

            def reaches_conflicted(event_id: str) -> bool:
                if event_id not in reaches:
                    reaches[event_id] = False
                    reaches[event_id] = event_id in conflicted_state or any(
                        reaches_conflicted(a) for a in self.events[event_id].auth_event_ids()
                    )
                return reaches[event_id]

            subgraph = {e for e in below if reaches_conflicted(e)}
        self.seconds += time.perf_counter() - start
        return StateDifference(auth_difference=difference, conflicted_subgraph=subgraph)


def bench_state_res(big: BigRoom, repeats: int) -> Row:
    version = big.version
    hearth_rv = get_room_version(version)
    synapse_rv = oracle.room_version(version)
    hearth_events = [make_event(e.pdu, hearth_rv) for e in big.room.events.values()]
    synapse_events = {
        e.event_id: make_event_from_dict(e.pdu, synapse_rv) for e in big.room.events.values()
    }
    source = InMemoryEventSource(hearth_events)
    results: dict[str, StateMap] = {}
    store_seconds: list[float] = []

    def hearth() -> None:
        results["hearth"] = resolve_state(hearth_rv, big.state_sets, source)

    def synapse() -> None:
        store = _SynapseStore(synapse_events)
        resolved = oracle.run(
            synapse_v2.resolve_events_with_store(
                _NoSleep(), big.room.room_id, synapse_rv, big.state_sets, None, store
            )
        )
        results["synapse"] = dict(resolved)
        store_seconds.append(store.seconds)

    hearth_time = best_of(repeats, hearth)
    synapse_time = best_of(repeats, synapse)
    same = results["hearth"] == results["synapse"]
    total = len(big.room.events)
    return Row(
        f"state res v{version}: {len(big.state_sets[0])} state, {big.conflicted} conflicted",
        "ms",
        hearth_time * 1000,
        synapse_time * 1000,
        False,
        note=(
            f"{total} events; results {'agree' if same else 'DIFFER'}; "
            f"Synapse store share {min(store_seconds) * 1000:.0f} ms"
        ),
    )


class _NoSleep:
    async def sleep(self, duration: Any) -> None:
        return None


# --- the table ---------------------------------------------------------------------------


def print_table(rows: Sequence[Row]) -> None:
    header = ("benchmark", "Hearth", "Synapse", "Hearth vs Synapse", "unit")
    lines = [
        (
            row.name,
            f"{row.hearth:,.0f}" if row.unit != "ms" else f"{row.hearth:,.1f}",
            f"{row.synapse:,.0f}" if row.unit != "ms" else f"{row.synapse:,.1f}",
            f"{row.speedup:.2f}x {'faster' if row.speedup >= 1 else 'slower'}",
            row.unit,
        )
        for row in rows
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(fmt.format(*header))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print(fmt.format(*line))
    for row in rows:
        if row.note:
            print(f"  {row.name}: {row.note}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, one repeat")
    parser.add_argument("--events", type=int, default=2000, help="events per per-event bench")
    parser.add_argument("--state", type=int, default=10_000, help="state events for state res")
    parser.add_argument("--conflicted", type=int, default=200, help="conflicted state entries")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 3
    n_events = 300 if args.quick else args.events
    n_state = 1000 if args.quick else args.state

    rng = random.Random("protocol-bench")
    room, order = generated_room("12", n_events, rng)
    templates = [_template(room.events[e].pdu) for e in order[1:]]
    rows = [
        bench_sign("12", templates, repeats),
        bench_verify("12", templates, repeats),
        bench_auth("12", room, order, repeats),
    ]
    room10, order10 = generated_room("10", n_events, random.Random("protocol-bench-10"))
    rows.append(bench_auth("10", room10, order10, repeats))
    for version in ("10", "12"):
        rows.append(bench_state_res(big_room(version, n_state, args.conflicted), repeats))
    print_table(rows)


if __name__ == "__main__":
    main()
