"""Event authorisation: Hearth against Synapse on the same generated events, v1-v12.

Each case is one candidate event in an evolving room (see ``rooms.py``): its
``auth_events`` are picked from the room's current state by the auth events selection
algorithm, and sometimes deliberately broken (create event missing or, in v12, listed;
an unexpected, duplicate, stale, rejected, non-state or foreign-room entry; a
``prev_events`` that points at the create event). Both servers then decide whether it
is allowed as a received PDU:

* Synapse: ``check_state_independent_auth_rules`` then ``check_state_dependent_auth_rules``
  with the event's auth events (as its federation handler does).
* Hearth: ``check_auth_events_shape`` then ``check_auth_rules`` with the same events.

The booleans must agree; the reasons are printed when they do not. Events both allow
are applied to the room's state (mostly), so rooms evolve through bans, demotions,
join rule changes and so on. Event IDs and the auth event types each side selects are
compared on every case too.
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass, field

import pytest

from tests.differential import hearth_side
from tests.differential import synapse_oracle as oracle
from tests.differential.deviations import classify_auth_difference
from tests.differential.harness import (
    ROOM_VERSIONS,
    Tally,
    case_indices,
    case_rng,
    record,
    reproduce_hint,
    scaled,
)
from tests.differential.rooms import (
    USERS,
    Candidate,
    CandidateMaker,
    GeneratedEvent,
    Room,
    StateKey,
    StateMap,
    new_room,
    opening,
    server_of,
)

SUITE = "auth"
ROOMS_PER_VERSION = 8
STEPS_PER_ROOM = 110
CREATE_VARIANTS_PER_VERSION = 30

pytestmark = pytest.mark.slow


@dataclass
class AuthRoom:
    room: Room
    synapse: oracle.EventMap
    hearth: hearth_side.HearthEvents
    state: StateMap
    tip: list[str]
    accepted_by_key: dict[StateKey, list[str]] = field(default_factory=dict)
    rejected_by_key: dict[StateKey, list[str]] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def add(self, event: GeneratedEvent) -> None:
        self.synapse.add(event)
        self.hearth.add(event)

    def reject(self, event: GeneratedEvent) -> None:
        event.rejected = True
        self.synapse.add(event)
        self.hearth[event.event_id].rejected_reason = "auth_error"
        if event.state_key is not None:
            self.rejected_by_key.setdefault((event.type, event.state_key), []).append(
                event.event_id
            )

    def accept(self, event: GeneratedEvent, apply: bool) -> None:
        if event.state_key is None:
            self.messages.append(event.event_id)
        if not apply:
            return
        self.tip = [event.event_id]
        if event.state_key is not None:
            key = (event.type, event.state_key)
            self.state[key] = event.event_id
            self.accepted_by_key.setdefault(key, []).append(event.event_id)


def _new_auth_room(version: str, rng: random.Random) -> AuthRoom:
    room = new_room(version, oracle.finish_pdu, rng)
    ar = AuthRoom(
        room,
        oracle.EventMap(version),
        hearth_side.HearthEvents(version),
        {("m.room.create", ""): room.create_id},
        [room.create_id],
    )
    ar.add(room.create)
    ar.accepted_by_key[("m.room.create", "")] = [room.create_id]
    # A second room, whose state events serve as "auth events from another room".
    other = new_room(version, oracle.finish_pdu, rng, creator=USERS[0], plain=True)
    ar.add(other.create)
    join = other.make_event(
        "m.room.member",
        USERS[0],
        {"membership": "join"},
        state_key=USERS[0],
        prev_events=[other.create_id],
        auth_events=[] if other.number >= 12 else [other.create_id],
    )
    ar.add(join)
    ar.foreign = [other.create_id, join.event_id]
    return ar


def _perturb(
    ar: AuthRoom, candidate: Candidate, auth: list[str], rng: random.Random
) -> tuple[list[str], str]:
    """Sometimes break the auth_events list; returns the list and what was done."""
    number = ar.room.number
    if rng.random() > 0.14 or candidate.type == "m.room.create":
        return auth, ""
    kind = rng.choice(
        ("drop_create", "extra", "duplicate", "stale", "rejected", "foreign", "non_state", "drop")
    )
    auth = list(auth)
    if kind == "drop_create" and number < 12:
        auth = [a for a in auth if a != ar.room.create_id]
    elif kind == "drop_create":
        auth.append(ar.room.create_id)
        kind = "list_create_v12"
    elif kind == "extra":
        extras = [e for k, e in ar.state.items() if e not in auth and k[0] != "m.room.create"]
        if not extras:
            return auth, ""
        auth.append(rng.choice(extras))
    elif kind in ("duplicate", "stale", "rejected"):
        pool = ar.rejected_by_key if kind == "rejected" else ar.accepted_by_key
        options = []
        for event_id in auth:
            event = ar.room.events[event_id]
            key = (event.type, event.state_key or "")
            options += [(event_id, o) for o in pool.get(key, []) if o != event_id]
        if not options:
            return auth, ""
        current, older = rng.choice(options)
        if kind == "duplicate":
            auth.append(older)
        else:
            auth[auth.index(current)] = older
    elif kind == "foreign":
        auth.append(rng.choice(ar.foreign))
    elif kind == "non_state":
        if not ar.messages:
            return auth, ""
        auth.append(rng.choice(ar.messages))
    elif kind == "drop" and auth:
        auth.remove(rng.choice(auth))
    return auth, kind


def _describe(ar: AuthRoom, event: GeneratedEvent) -> str:
    lines = [f"  candidate {event.event_id}: {event.pdu}"]
    for event_id in ar.room.events[event.event_id].pdu["auth_events"]:
        event_id = event_id[0] if isinstance(event_id, list) else event_id
        auth_event = ar.room.events.get(event_id)
        if auth_event is not None:
            lines.append(
                f"    auth {event_id}: {auth_event.type} {auth_event.state_key!r} "
                f"sender={auth_event.sender} content={auth_event.content}"
                f"{' REJECTED' if auth_event.rejected else ''}"
            )
    return "\n".join(lines)


def _run_room(version: str, index: int, tally: Tally) -> None:
    rng = case_rng(SUITE, version, index)
    ar = _new_auth_room(version, rng)
    room = ar.room
    maker = CandidateMaker(room, rng)
    script = opening(room, rng)
    for step in range(STEPS_PER_ROOM):
        candidate = script.pop(0) if script else maker.candidate(ar.state)
        auth = (
            []
            if candidate.type == "m.room.create"
            else room.auth_event_ids(
                ar.state, candidate.type, candidate.sender, candidate.state_key, candidate.content
            )
        )
        if room.number >= 12:
            auth = [a for a in auth if a != room.create_id]
        auth, perturbation = _perturb(ar, candidate, auth, rng)
        prev = ar.tip
        if candidate.type == "m.room.member" and rng.random() < 0.03:
            prev = [room.create_id]
            perturbation += "+prev_is_create"
        event = room.make_event(
            candidate.type,
            candidate.sender,
            candidate.content,
            state_key=candidate.state_key,
            prev_events=prev,
            auth_events=auth,
            extra=candidate.extra,
        )
        ar.add(event)
        if ar.hearth.id_mismatches:
            tally.mismatches += [
                f"{m}\n  reproduce: {reproduce_hint('test_auth_rules.py', version, index)}"
                for m in ar.hearth.id_mismatches
            ]
            ar.hearth.id_mismatches.clear()
        synapse_event = ar.synapse[event.event_id]
        hearth_event = ar.hearth[event.event_id]
        synapse_ok, synapse_why = oracle.check_auth(synapse_event, ar.synapse)
        try:
            hearth_ok, hearth_why = hearth_side.check_auth(hearth_event, ar.hearth)
        except Exception:  # Hearth must answer, never crash: report it
            hearth_ok, hearth_why = False, "HEARTH CRASHED\n" + traceback.format_exc()
        tally.cases += 1
        label = f"{candidate.label} {perturbation}".strip()
        where = f"room {index} step {step} ({label})"
        if synapse_ok != hearth_ok or "HEARTH CRASHED" in hearth_why:
            deviation = classify_auth_difference(
                synapse_event, hearth_event, hearth_ok, ar.synapse, ar.hearth
            )
            if deviation and "HEARTH CRASHED" not in hearth_why:
                tally.deviation(deviation)
            else:
                tally.mismatches.append(
                    f"{where}: synapse {'allows' if synapse_ok else 'rejects'} ({synapse_why}); "
                    f"hearth {'allows' if hearth_ok else 'rejects'} ({hearth_why})\n"
                    f"  reproduce: {reproduce_hint('test_auth_rules.py', version, index)}\n"
                    f"{_describe(ar, event)}"
                )
        if "CRASH" not in synapse_why and candidate.type != "m.room.create":
            synapse_types = oracle.auth_types_for_event(synapse_event)
            if room.number >= 12:
                # Synapse lists the create event for v12 too (it adds it to auth_event_ids).
                synapse_types.discard(("m.room.create", ""))
            # A non-string third-party invite token names no state: Synapse keeps it in
            # the list, Hearth leaves it out; neither can find such an event.
            synapse_types = {k for k in synapse_types if isinstance(k[1], str)}
            hearth_types = hearth_side.auth_types_for_event(hearth_event)
            if room.number >= 12:
                hearth_types.discard(("m.room.create", ""))
            if synapse_types != hearth_types:
                tally.mismatches.append(
                    f"{where}: auth events selection differs: synapse "
                    f"{sorted(synapse_types, key=str)} hearth {sorted(hearth_types, key=str)}\n"
                    f"  reproduce: {reproduce_hint('test_auth_rules.py', version, index)}\n"
                    f"{_describe(ar, event)}"
                )
        if synapse_ok:
            tally.accepted += 1
            # Perturbed events stay out of the room's state (they were for testing), and
            # so do events the two disagree on, lest one difference cascade into many.
            agreed = synapse_ok == hearth_ok
            ar.accept(event, apply=agreed and not perturbation and rng.random() < 0.85)
        else:
            ar.reject(event)


@pytest.mark.parametrize("version", ROOM_VERSIONS, ids=lambda v: f"v{v}")
def test_auth_rules_match_synapse(version: str) -> None:
    tally = Tally(SUITE, version)
    for index in case_indices(version, scaled(ROOMS_PER_VERSION)):
        _run_room(version, index, tally)
    record(tally)
    assert not tally.mismatches, tally.report()


# --- m.room.create (rule 1) -------------------------------------------------------------


def _create_variant(version: str, rng: random.Random) -> tuple[Room, GeneratedEvent, str]:
    room = new_room(version, oracle.finish_pdu, rng, plain=True)
    number = room.number
    sender = room.create.sender
    content: dict[str, object] = {"room_version": version}
    if number < 11:
        content["creator"] = sender
    flaws = ["none", "prev_events", "unknown_version", "no_room_version", "int_version"]
    if number < 12:
        flaws += ["room_id_domain"]
    if number < 11:
        flaws += ["no_creator", "creator_not_string"]
    if number >= 12:
        flaws += ["additional_creators"] * 4
    flaw = rng.choice(flaws)
    prev: list[str] = []
    if flaw == "prev_events":
        prev = [room.create_id]
    elif flaw == "unknown_version":
        content["room_version"] = rng.choice(("99", "org.example.nope", "1.0"))
    elif flaw == "no_room_version":
        del content["room_version"]
    elif flaw == "int_version":
        content["room_version"] = int(version)
    elif flaw == "room_id_domain":
        room.room_id = f"!elsewhere:{rng.choice(('b.test', 'z.test'))}"
        if server_of(room.room_id) == server_of(sender):
            flaw = "none"
    elif flaw == "no_creator":
        del content["creator"]
    elif flaw == "creator_not_string":
        content["creator"] = 5
    elif flaw == "additional_creators":
        content["additional_creators"] = rng.choice(
            (
                [USERS[1]],
                [],
                USERS[1],
                [USERS[1], 5],
                ["not-a-user"],
                ["@" + "x" * 260 + ":a.test"],
                ["@UPPER:a.test"],
                [USERS[2], USERS[2]],
                {"a": USERS[1]},
            )
        )
    if number >= 12:
        room.room_id = ""
    event = room.make_event(
        "m.room.create", sender, content, state_key="", prev_events=prev, auth_events=[]
    )
    return room, event, flaw


@pytest.mark.parametrize("version", ROOM_VERSIONS, ids=lambda v: f"v{v}")
def test_create_event_rules_match_synapse(version: str) -> None:
    tally = Tally("auth_create", version)
    for index in case_indices(version, scaled(CREATE_VARIANTS_PER_VERSION)):
        rng = case_rng("auth_create", version, index)
        room, event, flaw = _create_variant(version, rng)
        synapse_events = oracle.EventMap(version)
        hearth_events = hearth_side.HearthEvents(version)
        for generated in room.events.values():
            synapse_events.add(generated)
            hearth_events.add(generated)
        tally.mismatches += hearth_events.id_mismatches
        synapse_ok, synapse_why = oracle.check_auth(synapse_events[event.event_id], synapse_events)
        try:
            hearth_ok, hearth_why = hearth_side.check_auth(
                hearth_events[event.event_id], hearth_events
            )
        except Exception:
            hearth_ok, hearth_why = False, "HEARTH CRASHED\n" + traceback.format_exc()
        tally.cases += 1
        tally.accepted += synapse_ok
        if synapse_ok != hearth_ok or "HEARTH CRASHED" in hearth_why:
            tally.mismatches.append(
                f"create variant {index} ({flaw}): synapse {synapse_ok} ({synapse_why}); "
                f"hearth {hearth_ok} ({hearth_why})\n"
                f"  reproduce: {reproduce_hint('test_auth_rules.py', version, index)}\n"
                f"  {event.pdu}"
            )
    record(tally)
    assert not tally.mismatches, tally.report()
