"""A small room builder for the authorisation rule tests.

Events carry a real content hash and, from v3 on, their real event ID (the reference
hash), so the same events can be handed to other implementations; v1/v2 events get
``$<n>:<sender server>``, whose domain the v1/v2 redaction rule reads. In v12 the room
ID is derived from the create event's ID. Signatures are placeholders: the rules only
look at which servers signed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from homeserver.auth import auth_types_for_event, check_auth_rules
from homeserver.events.errors import EventValidationError
from homeserver.events.hashing import add_content_hash, compute_event_id
from homeserver.events.model import Event, StateKey
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion

ALICE = "@alice:a.test"  # the creator
BOB = "@bob:b.test"
CAROL = "@carol:c.test"
DAVE = "@dave:d.test"
USERS = [ALICE, BOB, CAROL, DAVE]

ALL_VERSIONS = [str(n) for n in range(1, 13)]


def versions(predicate: Any = None) -> list[str]:
    """Room version identifiers whose RoomVersion satisfies ``predicate``."""
    if predicate is None:
        return list(ALL_VERSIONS)
    return [v for v in ALL_VERSIONS if predicate(KNOWN_ROOM_VERSIONS[v])]


def domain(identifier: str) -> str:
    return identifier.partition(":")[2]


_counter = itertools.count(1)


def _finish(pdu: dict[str, Any], room_version: RoomVersion, event_id: str | None) -> Event:
    """Hash ``pdu`` and wrap it; ``event_id`` overrides the ID it would get."""
    if room_version.uses_opaque_event_ids:
        event_id = event_id or f"${next(_counter)}:{domain(pdu['sender'])}"
        pdu["event_id"] = event_id
    try:
        add_content_hash(pdu)
        if event_id is None:
            event_id = compute_event_id(pdu, room_version)
    except EventValidationError:
        # Content no JSON can carry (NaN, infinities): only the rules get to see it.
        event_id = event_id or f"$unhashable{next(_counter)}"
    return Event(pdu, room_version, event_id)


def references(room_version: RoomVersion, event_ids: Iterable[str]) -> list[Any]:
    if room_version.event_format is EventFormat.V1:
        return [[event_id, {"sha256": "x"}] for event_id in event_ids]
    return list(event_ids)


def make_create(
    version: str,
    *,
    sender: str = ALICE,
    content: Mapping[str, Any] | None = None,
    room_id: str | None = None,
    event_id: str | None = None,
    prev_events: list[str] | None = None,
) -> Event:
    room_version = KNOWN_ROOM_VERSIONS[version]
    if content is None:
        content = {"room_version": version}
        if not room_version.implicit_room_creator:
            content["creator"] = sender
    pdu: dict[str, Any] = {
        "type": "m.room.create",
        "state_key": "",
        "sender": sender,
        "content": dict(content),
        "prev_events": references(room_version, prev_events or []),
        "auth_events": [],
        "depth": 1,
        "origin_server_ts": next(_counter),
        "signatures": {domain(sender): {"ed25519:k": "sig"}},
    }
    if room_version.room_id_is_create_event_hash:
        if room_id is not None:
            pdu["room_id"] = room_id
    else:
        pdu["room_id"] = room_id or f"!room:{domain(sender)}"
    return _finish(pdu, room_version, event_id)


class Room:
    """Room state ((type, state_key) -> Event) built event by event."""

    def __init__(
        self,
        version: str,
        *,
        creator: str = ALICE,
        create_content: Mapping[str, Any] | None = None,
    ) -> None:
        self.version = version
        self.room_version = KNOWN_ROOM_VERSIONS[version]
        self.create = make_create(version, sender=creator, content=create_content)
        self.room_id = self.create.room_id
        self.state: dict[StateKey, Event] = {("m.room.create", ""): self.create}
        self.last_event_id = self.create.event_id

    # --- building events ------------------------------------------------------------

    def event(
        self,
        event_type: str,
        sender: str,
        content: Mapping[str, Any] | None = None,
        *,
        state_key: str | None = None,
        prev_events: list[str] | None = None,
        event_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        signed_by: Iterable[str] = (),
    ) -> Event:
        room_version = self.room_version
        signatures = {domain(sender): {"ed25519:k": "sig"}}
        for server in signed_by:
            signatures[server] = {"ed25519:k": "sig"}
        pdu: dict[str, Any] = {
            "type": event_type,
            "sender": sender,
            "room_id": self.room_id,
            "content": dict(content or {}),
            "prev_events": references(
                room_version, prev_events if prev_events is not None else [self.last_event_id]
            ),
            "auth_events": [],
            "depth": 2,
            "origin_server_ts": next(_counter),
            "signatures": signatures,
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        pdu.update(extra or {})
        return _finish(pdu, room_version, event_id)

    def member(
        self,
        target: str,
        membership: str,
        *,
        sender: str | None = None,
        content: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Event:
        body = {"membership": membership, **(content or {})}
        return self.event("m.room.member", sender or target, body, state_key=target, **kwargs)

    def power_levels(self, content: Mapping[str, Any], sender: str = ALICE) -> Event:
        return self.event("m.room.power_levels", sender, content, state_key="")

    # --- state ---------------------------------------------------------------------------

    def add(self, event: Event) -> Event:
        """Put ``event`` in the room state, without checking it."""
        assert event.state_key is not None
        self.state[(event.type, event.state_key)] = event
        self.last_event_id = event.event_id
        return event

    def set_member(self, target: str, membership: str, **kwargs: Any) -> Event:
        return self.add(self.member(target, membership, **kwargs))

    def set_power_levels(self, content: Mapping[str, Any]) -> Event:
        return self.add(self.power_levels(content))

    def set_join_rule(self, join_rule: str) -> Event:
        return self.add(
            self.event("m.room.join_rules", ALICE, {"join_rule": join_rule}, state_key="")
        )

    def auth_state_for(self, event: Event) -> dict[StateKey, Event]:
        """What a server passes to ``check_auth_rules``: the selected pieces of state,
        create included in every version."""
        types = auth_types_for_event(
            self.room_version, event.type, event.sender, event.state_key, event.content
        )
        return {key: self.state[key] for key in types if key in self.state}

    def check(self, event: Event) -> None:
        check_auth_rules(event, self.auth_state_for(event))


def standard_room(
    version: str,
    *,
    join_rule: str | None = "public",
    users: Mapping[str, Any] | None = None,
    extra_levels: Mapping[str, Any] | None = None,
    creator: str = ALICE,
    create_content: Mapping[str, Any] | None = None,
) -> Room:
    """create, creator joined, power levels (creator at 100 unless v12), join rules."""
    room = Room(version, creator=creator, create_content=create_content)
    room.set_member(creator, "join")
    users_map = dict(users) if users is not None else {}
    if users is None and not room.room_version.creators_have_infinite_power:
        users_map[creator] = 100
    levels: dict[str, Any] = {"users": users_map}
    levels.update(extra_levels or {})
    room.set_power_levels(levels)
    if join_rule is not None:
        room.set_join_rule(join_rule)
    return room
