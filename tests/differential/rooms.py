"""Random rooms for the differential tests: PDUs as plain dicts, no Hearth, no Synapse.

The generator only knows the wire format of each room version and the auth events
selection algorithm (server-server API, "Auth events selection"); whether an event is
allowed is always decided by the implementations under comparison. What it builds:

- ``Room``: the events of one room, each a signed PDU with its event ID, plus the
  bookkeeping to pick auth events from a state map and to make new events.
- ``CandidateMaker``: random events a room might receive, biased towards plausible
  ones (members joining, leaving, being invited, kicked, banned, knocking; power level,
  join rule, topic and custom state changes; messages, redactions, third-party invites,
  aliases, stray create events) with a good share of events that must be rejected.

Everything is driven by a ``random.Random`` so that a seed reproduces a run exactly.
Events are finished (content hash, signatures, event ID) by a ``Finisher`` supplied by
the caller, so the generator itself stays free of either implementation.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from signedjson.key import decode_signing_key_base64
from signedjson.sign import sign_json
from signedjson.types import SigningKey
from unpaddedbase64 import encode_base64

JsonDict = dict[str, Any]
StateKey = tuple[str, str]
StateMap = dict[StateKey, str]

SERVERS = ("a.test", "b.test", "c.test")
USERS = tuple(f"@u{i}:{SERVERS[i % len(SERVERS)]}" for i in range(8))
# A user on a server that never sends anything else: exercises m.federate and strangers.
STRANGER = "@stranger:d.test"
ALL_USERS = (*USERS, STRANGER)
IDENTITY_SERVER = "id.test"

POWER_LEVEL_KEYS = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "redact",
    "kick",
    "invite",
)
LEVELS = (-10, 0, 0, 10, 25, 50, 50, 60, 75, 99, 100, 100, 101)


@dataclass
class GeneratedEvent:
    """One event as a server would hold it: the PDU, its ID, and whether it was rejected."""

    pdu: JsonDict
    event_id: str
    rejected: bool = False

    @property
    def type(self) -> str:
        return str(self.pdu["type"])

    @property
    def state_key(self) -> str | None:
        key = self.pdu.get("state_key")
        return key if isinstance(key, str) else None

    @property
    def sender(self) -> str:
        return str(self.pdu["sender"])

    @property
    def content(self) -> JsonDict:
        content = self.pdu.get("content")
        return content if isinstance(content, dict) else {}


Finisher = Callable[[JsonDict, str], tuple[JsonDict, str]]
"""``(pdu without hashes/signatures, room version) -> (signed pdu, event ID)``."""


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


def version_number(room_version: str) -> int:
    return int(room_version)


def auth_types(
    room_version: str, event_type: str, sender: str, state_key: str | None, content: Any
) -> list[StateKey]:
    """The (type, state_key) pairs the auth events selection algorithm picks.

    Spec, server-server API "Auth events selection". From v12 the create event is not
    selected (the room ID names it).
    """
    number = version_number(room_version)
    if event_type == "m.room.create":
        return []
    types: list[StateKey] = []
    if number < 12:
        types.append(("m.room.create", ""))
    types.append(("m.room.power_levels", ""))
    types.append(("m.room.member", sender))
    if event_type == "m.room.member" and isinstance(state_key, str) and isinstance(content, dict):
        membership = content.get("membership")
        types.append(("m.room.member", state_key))
        if membership in ("join", "invite", "knock"):
            types.append(("m.room.join_rules", ""))
        tpi = content.get("third_party_invite")
        if membership == "invite" and isinstance(tpi, dict):
            signed = tpi.get("signed")
            if isinstance(signed, dict) and isinstance(signed.get("token"), str):
                types.append(("m.room.third_party_invite", signed["token"]))
        authoriser = content.get("join_authorised_via_users_server")
        if number >= 8 and membership == "join" and isinstance(authoriser, str):
            types.append(("m.room.member", authoriser))
    # Keep the order, drop duplicates (target == sender).
    return list(dict.fromkeys(types))


def signing_key(seed: bytes, version: str = "1") -> SigningKey:
    """An Ed25519 signing key (signedjson's type) from a 32-byte seed."""
    return decode_signing_key_base64("ed25519", version, encode_base64(seed))


def server_signing_key(server_name: str) -> SigningKey:
    """A fixed Ed25519 key per test server (the seed is derived from the name)."""
    return signing_key((server_name.encode() * 32)[:32])


@dataclass
class Room:
    """The events of one generated room."""

    room_version: str
    finisher: Finisher
    rng: random.Random
    room_id: str = ""
    create_id: str = ""
    events: dict[str, GeneratedEvent] = field(default_factory=dict)
    # Third-party invite signing keys by token.
    tpi_keys: dict[str, SigningKey] = field(default_factory=dict)
    _counter: int = 0
    _ts: int = 1_600_000_000_000

    @property
    def number(self) -> int:
        return version_number(self.room_version)

    @property
    def create(self) -> GeneratedEvent:
        return self.events[self.create_id]

    def creators(self) -> set[str]:
        create = self.create
        if self.number >= 11:
            creators = {create.sender}
        else:
            creator = create.content.get("creator")
            creators = {creator} if isinstance(creator, str) else set()
        if self.number >= 12:
            extra = create.content.get("additional_creators")
            if isinstance(extra, list):
                creators.update(c for c in extra if isinstance(c, str))
        return creators

    def next_ts(self) -> int:
        # Steps of 0 happen on purpose: equal timestamps exercise the ID tie-breaks.
        self._ts += self.rng.choice((0, 0, 1, 7, 1000, 60_000))
        return self._ts

    def reference(self, event_id: str) -> Any:
        if self.number <= 2:
            digest = encode_base64(event_id.encode()[:32].ljust(32, b"="))
            return [event_id, {"sha256": digest}]
        return event_id

    def make_event(
        self,
        event_type: str,
        sender: str,
        content: Any,
        *,
        state_key: str | None = None,
        prev_events: list[str],
        auth_events: list[str],
        depth: int | None = None,
        extra: Mapping[str, Any] | None = None,
        rejected: bool = False,
        remember: bool = True,
    ) -> GeneratedEvent:
        """Finish and (if ``remember``) record an event built from these fields."""
        pdu: JsonDict = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "prev_events": [self.reference(e) for e in prev_events],
            "auth_events": [self.reference(e) for e in auth_events],
            "origin_server_ts": self.next_ts(),
        }
        if depth is None:
            depth = 1 + max((self._depth(e) for e in prev_events), default=0)
        pdu["depth"] = depth
        if state_key is not None:
            pdu["state_key"] = state_key
        is_create = event_type == "m.room.create" and state_key == ""
        if self.room_id and not (self.number >= 12 and is_create):
            pdu["room_id"] = self.room_id
        if self.number <= 2:
            self._counter += 1
            pdu["event_id"] = f"${self._counter}x{self.rng.randrange(10**6)}:{server_of(sender)}"
        if extra:
            pdu.update(extra)
        signed, event_id = self.finisher(pdu, self.room_version)
        event = GeneratedEvent(signed, event_id, rejected)
        if remember:
            self.events[event_id] = event
        return event

    def _depth(self, event_id: str) -> int:
        event = self.events.get(event_id)
        return int(event.pdu.get("depth", 0)) if event else 0

    def auth_event_ids(
        self,
        state: Mapping[StateKey, str],
        event_type: str,
        sender: str,
        state_key: str | None,
        content: Any,
    ) -> list[str]:
        wanted = auth_types(self.room_version, event_type, sender, state_key, content)
        return [state[key] for key in wanted if key in state]

    def state_event(self, state: Mapping[StateKey, str], key: StateKey) -> GeneratedEvent | None:
        event_id = state.get(key)
        return self.events[event_id] if event_id is not None else None

    def membership(self, state: Mapping[StateKey, str], user_id: str) -> str | None:
        event = self.state_event(state, ("m.room.member", user_id))
        if event is None:
            return None
        membership = event.content.get("membership")
        return membership if isinstance(membership, str) else None


def new_room(
    room_version: str,
    finisher: Finisher,
    rng: random.Random,
    *,
    creator: str | None = None,
    plain: bool = False,
) -> Room:
    """A room holding just its (valid) create event.

    Unless ``plain``, the create event sometimes sets ``m.federate: false`` and, in v12,
    ``additional_creators``; before v11 ``creator`` is sometimes not the sender.
    """
    room = Room(room_version, finisher, rng)
    number = room.number
    creator = creator or rng.choice(USERS[:6])
    content: JsonDict = {"room_version": room_version}
    if number < 11:
        content["creator"] = creator
        if not plain and rng.random() < 0.05:
            content["creator"] = rng.choice(USERS)
    if not plain and rng.random() < 0.1:
        content["m.federate"] = False
    if number >= 12 and not plain and rng.random() < 0.3:
        others = [u for u in USERS if u != creator]
        content["additional_creators"] = rng.sample(others, rng.randint(1, 2))
    if number < 12:
        room.room_id = f"!r{rng.randrange(10**9)}:{server_of(creator)}"
    create = room.make_event(
        "m.room.create", creator, content, state_key="", prev_events=[], auth_events=[], depth=1
    )
    room.create_id = create.event_id
    if number >= 12:
        room.room_id = "!" + create.event_id[1:]
    return room


@dataclass
class Candidate:
    """The fields of an event still to be built."""

    type: str
    sender: str
    content: Any
    state_key: str | None = None
    extra: JsonDict = field(default_factory=dict)
    label: str = ""


class CandidateMaker:
    """Random candidate events for a room in a given state."""

    def __init__(self, room: Room, rng: random.Random, *, odd_content: bool = True) -> None:
        self.room = room
        self.rng = rng
        self.odd_content = odd_content

    # --- helpers ------------------------------------------------------------------

    def _users_with(self, state: Mapping[StateKey, str], *memberships: str | None) -> list[str]:
        return [u for u in ALL_USERS if self.room.membership(state, u) in memberships]

    def _pick(self, preferred: list[str], bias: float = 0.75) -> str:
        if preferred and self.rng.random() < bias:
            return self.rng.choice(preferred)
        return self.rng.choice(ALL_USERS)

    def _level(self) -> Any:
        level: Any = self.rng.choice(LEVELS)
        # Stringy levels are legal before v10 and must be rejected from v10.
        if self.rng.random() < (0.15 if self.room.number < 10 else 0.03):
            level = str(level)
        return level

    def current_power_levels(self, state: Mapping[StateKey, str]) -> JsonDict:
        event = self.room.state_event(state, ("m.room.power_levels", ""))
        return copy.deepcopy(event.content) if event else {}

    # --- the candidate kinds -------------------------------------------------------

    def candidate(self, state: Mapping[StateKey, str], *, state_only: bool = False) -> Candidate:
        rng = self.rng
        number = self.room.number
        kinds: list[tuple[Callable[[Mapping[StateKey, str]], Candidate], float]] = [
            (self.member, 45),
            (self.power_levels, 12),
            (self.join_rules, 8),
            (self.other_state, 14),
            (self.third_party_invite, 3),
        ]
        if not state_only:
            kinds += [
                (self.message, 7),
                (self.redaction, 4),
                (self.third_party_invite_member, 3),
                (self.create_again, 1.5),
            ]
            if number <= 6:
                kinds.append((self.aliases, 3))
        make = rng.choices([k for k, _ in kinds], weights=[w for _, w in kinds])[0]
        candidate = make(state)
        if self.odd_content and not state_only and rng.random() < 0.08:
            self.oddify(candidate)
        return candidate

    def _odd_level(self) -> Any:
        """Values a power level should not be, or only barely is."""
        odd: list[Any] = [
            " 50",
            "+50",
            "0x10",
            "1e2",
            "50.0",
            "",
            "-0",
            "\u0665",
            None,
            [],
            {},
            True,
        ]
        # v6+ canonical JSON stops at 2**53 - 1: beyond, the PDU itself is invalid.
        odd += [2**53 - 1 if self.room.number >= 6 else 2**53, -(2**53) + 1]
        if self.room.number < 6:
            # Lenient canonical JSON: floats and big integers can reach old rooms.
            odd += [50.5, 99.0, 2**60]
        return self.rng.choice(odd)

    def oddify(self, candidate: Candidate) -> None:
        """Make the content of ``candidate`` malformed or borderline, in place."""
        rng = self.rng
        content = candidate.content
        if not isinstance(content, dict):
            return
        if candidate.type == "m.room.member":
            choice = rng.randrange(5)
            if choice == 0:
                content["membership"] = rng.choice((5, None, ["join"], "Join"))
            elif choice == 1:
                content.pop("membership", None)
            elif choice == 2:
                content["join_authorised_via_users_server"] = rng.choice((5, "@nope", None))
            elif choice == 3:
                content["third_party_invite"] = rng.choice(
                    ("x", {"signed": "x"}, {"signed": {"mxid": 5, "token": 5}}, {})
                )
            else:
                candidate.state_key = rng.choice(("", "@", "not-a-user", "@u1:a.test_x"))
        elif candidate.type == "m.room.power_levels":
            choice = rng.randrange(4)
            if choice == 0:
                content[rng.choice(POWER_LEVEL_KEYS)] = self._odd_level()
            elif choice == 1:
                content.setdefault("users", {})
                if isinstance(content["users"], dict):
                    content["users"][rng.choice(USERS)] = self._odd_level()
            elif choice == 2:
                key = rng.choice(("users", "events", "notifications"))
                content[key] = rng.choice(([], "x", None, {"m.room.topic": self._odd_level()}))
            else:
                content["notifications"] = {"room": self._odd_level()}
        elif candidate.type == "m.room.join_rules":
            choice = rng.randrange(3)
            if choice == 0:
                content["join_rule"] = rng.choice((5, None, "PUBLIC", ["public"]))
            elif choice == 1:
                content.pop("join_rule", None)
            else:
                content["allow"] = rng.choice(("x", [5], None))
        elif candidate.state_key is not None:
            candidate.state_key = rng.choice(("@", "@u1:a.test_x", "@:", "@u1:a.test:x"))

    def member(self, state: Mapping[StateKey, str]) -> Candidate:
        rng = self.rng
        joined = self._users_with(state, "join")
        outside = self._users_with(state, None, "leave", "invite", "knock")
        action = rng.choices(
            ("join", "invite", "leave", "kick", "ban", "unban", "knock", "odd"),
            weights=(30, 18, 10, 10, 9, 4, 8 if self.room.number >= 7 else 2, 3),
        )[0]
        content: JsonDict
        if action == "join":
            sender = self._pick(outside)
            target = sender if rng.random() < 0.93 else rng.choice(ALL_USERS)
            content = {"membership": "join"}
            if rng.random() < (0.5 if self.room.number >= 8 else 0.1):
                content["join_authorised_via_users_server"] = self._pick(joined, 0.8)
        elif action == "invite":
            sender = self._pick(joined)
            target = self._pick(outside)
            content = {"membership": "invite"}
        elif action == "leave":
            sender = rng.choice(ALL_USERS)
            target = sender
            content = {"membership": "leave"}
        elif action == "kick":
            sender = self._pick(joined)
            target = self._pick(joined + self._users_with(state, "invite", "knock"))
            content = {"membership": "leave"}
        elif action == "ban":
            sender = self._pick(joined)
            target = rng.choice(ALL_USERS)
            content = {"membership": "ban"}
        elif action == "unban":
            sender = self._pick(joined)
            target = self._pick(self._users_with(state, "ban"), 0.9)
            content = {"membership": "leave"}
        elif action == "knock":
            sender = self._pick(outside)
            target = sender if rng.random() < 0.9 else rng.choice(ALL_USERS)
            content = {"membership": "knock"}
        else:
            sender = rng.choice(ALL_USERS)
            target = rng.choice(ALL_USERS)
            content = {"membership": rng.choice(("foo", "JOIN", "knock", "leave"))}
        if rng.random() < 0.2:
            content["displayname"] = f"name {rng.randrange(100)}"
        return Candidate("m.room.member", sender, content, target, label=f"member/{action}")

    def power_levels(self, state: Mapping[StateKey, str]) -> Candidate:
        rng = self.rng
        room = self.room
        content = self.current_power_levels(state)
        for key in ("users", "events", "notifications"):
            if key in content and not isinstance(content[key], dict):
                del content[key]
        joined = self._users_with(state, "join")
        for _ in range(rng.randint(1, 3)):
            change = rng.choices(
                ("user", "remove_user", "key", "remove_key", "events", "notifications", "odd"),
                weights=(30, 8, 20, 5, 12, 5, 4),
            )[0]
            if change == "user":
                content.setdefault("users", {})[self._pick(joined, 0.6)] = self._level()
            elif change == "remove_user" and isinstance(content.get("users"), dict):
                if content["users"]:
                    del content["users"][rng.choice(sorted(content["users"]))]
            elif change == "key":
                content[rng.choice(POWER_LEVEL_KEYS)] = self._level()
            elif change == "remove_key":
                content.pop(rng.choice(POWER_LEVEL_KEYS), None)
            elif change == "events":
                event_type = rng.choice(
                    ("m.room.topic", "m.room.name", "m.room.power_levels", "m.room.message")
                )
                content.setdefault("events", {})[event_type] = self._level()
            elif change == "notifications":
                content.setdefault("notifications", {})["room"] = self._level()
            else:
                odd = rng.choice(("bad_user", "creator", "float", "bad_string", "bool"))
                if odd == "bad_user":
                    content.setdefault("users", {})["not-a-user"] = 10
                elif odd == "creator":
                    content.setdefault("users", {})[rng.choice(sorted(room.creators()))] = 100
                elif odd == "float" and room.number < 6:
                    content["kick"] = 50.0
                elif odd == "bad_string":
                    content.setdefault("users", {})[rng.choice(USERS)] = "lots"
                else:
                    content["events_default"] = True
        sender = self._pick(self._powerful(state), 0.7)
        return Candidate("m.room.power_levels", sender, content, "", label="power_levels")

    def _powerful(self, state: Mapping[StateKey, str]) -> list[str]:
        joined = self._users_with(state, "join")
        levels = self.current_power_levels(state).get("users", {})
        strong = [u for u in joined if str(levels.get(u, 0)).lstrip("-").isdigit()]
        strong = [u for u in strong if int(levels.get(u, 0)) >= 50]
        return strong + [u for u in joined if u in self.room.creators()]

    def join_rules(self, state: Mapping[StateKey, str]) -> Candidate:
        rng = self.rng
        rule = rng.choices(
            ("public", "invite", "knock", "restricted", "knock_restricted", "private", "odd"),
            weights=(25, 20, 15, 15, 12, 5, 3),
        )[0]
        content: JsonDict = {"join_rule": rule}
        if rule in ("restricted", "knock_restricted") or rng.random() < 0.1:
            content["allow"] = [{"type": "m.room_membership", "room_id": "!other:a.test"}]
        sender = self._pick(self._powerful(state), 0.7)
        return Candidate("m.room.join_rules", sender, content, "", label=f"join_rules/{rule}")

    def other_state(self, state: Mapping[StateKey, str]) -> Candidate:
        rng = self.rng
        joined = self._users_with(state, "join")
        sender = self._pick(joined, 0.8)
        event_type, content = rng.choice(
            (
                ("m.room.topic", {"topic": f"topic {rng.randrange(1000)}"}),
                ("m.room.name", {"name": f"name {rng.randrange(1000)}"}),
                ("m.room.history_visibility", {"history_visibility": "shared"}),
                ("org.example.state", {"n": rng.randrange(1000)}),
            )
        )
        state_key = ""
        if event_type == "org.example.state":
            state_key = rng.choice(
                ("", "x", sender, rng.choice(USERS), sender + "_suffix", "@not-a-user")
            )
        elif rng.random() < 0.05:
            state_key = sender
        return Candidate(event_type, sender, content, state_key, label=event_type)

    def message(self, state: Mapping[StateKey, str]) -> Candidate:
        sender = self._pick(self._users_with(state, "join"), 0.8)
        content = {"msgtype": "m.text", "body": "hello"}
        return Candidate("m.room.message", sender, content, label="message")

    def redaction(self, state: Mapping[StateKey, str]) -> Candidate:
        rng = self.rng
        sender = self._pick(self._users_with(state, "join"), 0.8)
        target = rng.choice(sorted(self.room.events))
        if rng.random() < 0.2 and self.room.number <= 2:
            target = f"$elsewhere:{rng.choice(SERVERS)}"
        content: JsonDict = {"reason": "spam"}
        extra: JsonDict = {}
        if self.room.number >= 11:
            content["redacts"] = target
        else:
            extra["redacts"] = target
        return Candidate("m.room.redaction", sender, content, None, extra, label="redaction")

    def aliases(self, state: Mapping[StateKey, str]) -> Candidate:
        rng = self.rng
        sender = rng.choice(ALL_USERS)
        state_key = server_of(sender) if rng.random() < 0.7 else rng.choice(SERVERS)
        if rng.random() < 0.05:
            state_key = ""
        content = {"aliases": [f"#a:{state_key}"]}
        return Candidate("m.room.aliases", sender, content, state_key, label="aliases")

    def third_party_invite(self, state: Mapping[StateKey, str]) -> Candidate:
        rng = self.rng
        sender = self._pick(self._users_with(state, "join"), 0.8)
        token = f"tok{rng.randrange(4)}"
        seed = bytes(rng.randrange(256) for _ in range(32))
        key = signing_key(seed, "0")
        self.room.tpi_keys[token] = key
        public = encode_base64(bytes(key.verify_key))
        content: JsonDict = {"display_name": "e...@example.org"}
        if rng.random() < 0.5:
            content["public_key"] = public
            content["key_validity_url"] = "https://id.test/isvalid"
        else:
            other = encode_base64(bytes(signing_key(seed[::-1]).verify_key))
            content["public_keys"] = [{"public_key": other}, {"public_key": public}]
        return Candidate("m.room.third_party_invite", sender, content, token, label="3pid")

    def third_party_invite_member(self, state: Mapping[StateKey, str]) -> Candidate:
        rng = self.rng
        tokens = [k[1] for k in state if k[0] == "m.room.third_party_invite"]
        token = rng.choice(tokens) if tokens and rng.random() < 0.9 else "tok-missing"
        tpi = self.room.state_event(state, ("m.room.third_party_invite", token))
        if tpi is not None and rng.random() < 0.85:
            sender = tpi.sender
        else:
            sender = self._pick(self._users_with(state, "join"))
        target = rng.choice(ALL_USERS)
        signed: JsonDict = {"mxid": target, "token": token}
        flaw = rng.choices(
            ("none", "mxid", "bad_sig", "two_sigs_bad_first", "no_sigs", "no_token"),
            weights=(60, 8, 8, 8, 4, 4),
        )[0]
        if flaw == "mxid":
            signed["mxid"] = rng.choice(ALL_USERS)
        key = self.room.tpi_keys.get(token) or signing_key(b"k" * 32, "0")
        if flaw == "no_token":
            del signed["token"]
        if flaw != "no_sigs":
            signed = sign_json(signed, IDENTITY_SERVER, key)
        if flaw == "bad_sig":
            signed["signatures"][IDENTITY_SERVER]["ed25519:0"] = encode_base64(b"\0" * 64)
        elif flaw == "two_sigs_bad_first":
            good = signed["signatures"].pop(IDENTITY_SERVER)
            # Dicts keep insertion order: the bad signature is tried first.
            signed["signatures"]["aa.id.test"] = {"ed25519:0": encode_base64(b"\1" * 64)}
            signed["signatures"][IDENTITY_SERVER] = good
        content = {
            "membership": "invite",
            "third_party_invite": {"display_name": "e...@example.org", "signed": signed},
        }
        return Candidate("m.room.member", sender, content, target, label=f"3pid-invite/{flaw}")

    def create_again(self, state: Mapping[StateKey, str]) -> Candidate:
        content: JsonDict = {"room_version": self.room.room_version}
        if self.room.number < 11:
            content["creator"] = self.room.create.sender
        return Candidate("m.room.create", self.room.create.sender, content, "", label="create2")


def opening(room: Room, rng: random.Random) -> list[Candidate]:
    """The usual first events of a room after its create event.

    The creator joins, sets power levels (a few users promoted, sometimes odd
    defaults), sets a join rule, invites some users; then users join. Each is an
    ordinary candidate: the caller checks and applies them one by one.
    """
    creator = room.create.sender
    number = room.number
    creators = room.creators()
    users: JsonDict = {}
    for user in rng.sample(USERS, rng.randint(1, 4)):
        users[user] = rng.choice((0, 10, 50, 50, 75, 100))
    if number >= 12:
        users = {u: level for u, level in users.items() if u not in creators}
    else:
        users[creator] = 100
    power_levels: JsonDict = {
        "users": users,
        "users_default": rng.choice((0, 0, 0, 10)),
        "events_default": rng.choice((0, 0, 10)),
        "state_default": rng.choice((50, 50, 0, 60)),
        "ban": rng.choice((50, 50, 75)),
        "kick": rng.choice((50, 50, 25, 75)),
        "redact": rng.choice((50, 0)),
        "invite": rng.choice((0, 0, 50)),
        "events": {"m.room.name": 50, "m.room.power_levels": 100},
    }
    if number < 10 and rng.random() < 0.3:
        power_levels["ban"] = str(power_levels["ban"])
        if users:
            any_user = rng.choice(sorted(users))
            users[any_user] = str(users[any_user])
    rule = rng.choice(("public", "public", "invite", "knock", "restricted"))
    candidates = [
        Candidate("m.room.member", creator, {"membership": "join"}, creator, label="open/join"),
        Candidate("m.room.power_levels", creator, power_levels, "", label="open/pl"),
        Candidate("m.room.join_rules", creator, {"join_rule": rule}, "", label="open/jr"),
    ]
    others = [u for u in USERS if u != creator]
    joiners = rng.sample(others, rng.randint(2, 6))
    for user in joiners:
        if rule != "public":
            candidates.append(
                Candidate(
                    "m.room.member", creator, {"membership": "invite"}, user, label="open/invite"
                )
            )
        candidates.append(
            Candidate("m.room.member", user, {"membership": "join"}, user, label="open/join")
        )
    return candidates
