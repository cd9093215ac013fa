"""Differential test: our auth rules against Synapse's on random rooms and events.

Synapse is installed in the dev venv; its ``check_state_dependent_auth_rules`` is the
counterpart of ``check_auth_rules``. The events carry real content hashes and event IDs
so Synapse parses them as it would off the wire.

One known, deliberate divergence is skipped: in a room whose create event says
``m.federate: false``, Synapse also rejects membership events whose *target* is on
another server; the spec only compares the *sender's* server, and so do we.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from homeserver.auth import AuthError, check_auth_rules
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from tests.unit.auth_fixtures import ALICE, ALL_VERSIONS, USERS, Room, domain

synapse_auth = pytest.importorskip("synapse.event_auth")
synapse_errors = pytest.importorskip("synapse.api.errors")
synapse_versions = pytest.importorskip("synapse.api.room_versions")
synapse_events = pytest.importorskip("synapse.events")

pytestmark = pytest.mark.slow

CASES_PER_VERSION = 1500
MEMBERSHIPS = ["join", "invite", "leave", "ban", "knock"]
JOIN_RULES = ["public", "invite", "knock", "restricted", "knock_restricted", "private"]


def synapse_verdict(event: Any, auth: dict, version: str) -> str | None:
    room_version = synapse_versions.KNOWN_ROOM_VERSIONS[version]

    def convert(ev: Any) -> Any:
        converted = synapse_events.make_event_from_dict(
            dict(ev.pdu), room_version, rejected_reason=ev.rejected_reason
        )
        assert converted.event_id == ev.event_id
        return converted

    try:
        synapse_auth.check_state_dependent_auth_rules(
            convert(event), [convert(ev) for ev in auth.values()]
        )
    except (synapse_errors.AuthError, synapse_errors.SynapseError) as e:
        return str(e)
    return None


def random_case(rng: random.Random, version: str) -> tuple[Room, Any]:
    rv = KNOWN_ROOM_VERSIONS[version]

    def level() -> Any:
        value = rng.choice([0, 0, 10, 50, 50, 60, 100])
        if not rv.enforce_int_power_levels and rng.random() < 0.2:
            return rng.choice([str(value), f" {value} ", f"+{value}"])
        return value

    create_content: dict[str, Any] | None = None
    if rng.random() < 0.1:
        create_content = {"room_version": version, "m.federate": rng.choice([False, True, "no"])}
        if not rv.implicit_room_creator:
            create_content["creator"] = ALICE
    elif rv.creators_have_infinite_power and rng.random() < 0.3:
        create_content = {"additional_creators": [rng.choice(USERS[1:])]}
    room = Room(version, create_content=create_content)
    if rng.random() < 0.95:
        room.set_member(ALICE, "join")
    if rng.random() < 0.9:
        users = {user: level() for user in USERS if rng.random() < 0.5}
        if rv.creators_have_infinite_power:
            users.pop(ALICE, None)
        levels: dict[str, Any] = {"users": users}
        for key in (
            "ban",
            "kick",
            "invite",
            "redact",
            "state_default",
            "events_default",
            "users_default",
        ):
            if rng.random() < 0.3:
                levels[key] = level()
        room.set_power_levels(levels)
    if rng.random() < 0.9:
        room.set_join_rule(rng.choice(JOIN_RULES))
    for user in USERS[1:]:
        membership = rng.choice([*MEMBERSHIPS, None])
        if membership is not None:
            room.set_member(user, membership, sender=user)

    sender = rng.choice(USERS)
    kind = rng.random()
    if kind < 0.6:
        target = rng.choice(USERS)
        membership = rng.choice(MEMBERSHIPS)
        if membership == "join" and rng.random() < 0.3:
            authoriser = rng.choice(USERS)
            event = room.member(
                target,
                membership,
                sender=sender,
                content={"join_authorised_via_users_server": authoriser},
                signed_by=[domain(authoriser)],
            )
        else:
            event = room.member(target, membership, sender=sender)
    elif kind < 0.7:
        event = room.event("m.room.message", sender, {"body": "x"})
    elif kind < 0.8:
        event_type = rng.choice(
            ["m.room.aliases", "m.room.topic", "m.custom", "m.room.third_party_invite"]
        )
        state_key = rng.choice(["", "a.test", "b.test", *USERS])
        event = room.event(event_type, sender, {}, state_key=state_key)
    elif kind < 0.85:
        redacts = rng.choice(["$1:a.test", "$2:b.test", "$x"])
        if rv.redacts_in_content:
            event = room.event("m.room.redaction", sender, {"redacts": redacts})
        else:
            event = room.event("m.room.redaction", sender, {}, extra={"redacts": redacts})
    else:
        users = {user: level() for user in USERS if rng.random() < 0.5}
        if rv.creators_have_infinite_power and rng.random() < 0.8:
            users.pop(ALICE, None)
        levels = {"users": users}
        for key in ("ban", "kick", "invite", "state_default"):
            if rng.random() < 0.3:
                levels[key] = level()
        event = room.event("m.room.power_levels", sender, levels, state_key="")
    return room, event


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_same_verdicts_as_synapse(version: str) -> None:
    rng = random.Random(f"auth-vs-synapse-{version}")
    verdicts = {"allowed": 0, "rejected": 0}
    for _ in range(CASES_PER_VERSION):
        room, event = random_case(rng, version)
        auth = room.auth_state_for(event)
        try:
            check_auth_rules(event, auth)
            ours = None
        except AuthError as e:
            ours = str(e)
        theirs = synapse_verdict(event, auth, version)
        if (
            ours is None
            and theirs is not None
            and "unfederatable" in theirs
            and event.type == "m.room.member"
            and domain(event.state_key) != domain(room.create.sender)
        ):
            continue
        verdicts["allowed" if ours is None else "rejected"] += 1
        assert (ours is None) == (theirs is None), (
            f"{event.type} by {event.sender} content={event.content} "
            f"state_key={event.state_key!r}: ours={ours!r} synapse={theirs!r} "
            f"state={ {k: v.content for k, v in auth.items()} }"
        )
    # the generator must exercise both outcomes
    assert verdicts["allowed"] > CASES_PER_VERSION // 20
    assert verdicts["rejected"] > CASES_PER_VERSION // 20
