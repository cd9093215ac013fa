"""Build small room DAGs by hand for the state resolution tests.

Events get names; the builder keeps track of the room state after each event (the
state before it, taken from its parent, plus itself), selects the auth events from
that state as the server-server spec's "auth events selection" says, and builds real
PDUs for the room version (real reference-hash event IDs from v3 on, ``$name:...``
IDs for v1/v2, a create-event-derived room ID in v12).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from homeserver.events.hashing import add_content_hash, make_event, room_id_from_create_event
from homeserver.events.model import Event, StateKey
from homeserver.room_versions import EventFormat, RoomVersion, get_room_version
from homeserver.state import InMemoryEventSource, resolve_state

ALICE = "@alice:a.example"
BOB = "@bob:b.example"
CHARLIE = "@charlie:c.example"
ZARA = "@zara:z.example"

CREATE = ("m.room.create", "")
POWER_LEVELS = ("m.room.power_levels", "")
JOIN_RULES = ("m.room.join_rules", "")
TOPIC = ("m.room.topic", "")


def member_key(user_id: str) -> StateKey:
    return ("m.room.member", user_id)


class DagBuilder:
    def __init__(self, room_version: RoomVersion | str, *, creator: str = ALICE) -> None:
        if isinstance(room_version, str):
            room_version = get_room_version(room_version)
        self.room_version = room_version
        self.creator = creator
        self.room_id = "!room:a.example"
        self.events: dict[str, Event] = {}
        self._names: dict[str, str] = {}
        self._state_after: dict[str, dict[StateKey, str]] = {}
        self._depth: dict[str, int] = {}
        self._ts = 1000

    # --- lookups -------------------------------------------------------------------

    def id(self, name: str) -> str:
        return self.events[name].event_id

    def name(self, event_id: str) -> str:
        return self._names[event_id]

    def state_after(self, name: str) -> dict[StateKey, str]:
        """The state (event IDs) after the named event."""
        return dict(self._state_after[name])

    def named(self, state: Mapping[StateKey, str]) -> dict[StateKey, str]:
        return {key: self._names.get(event_id, event_id) for key, event_id in state.items()}

    def source(self, order: Iterable[str] | None = None) -> InMemoryEventSource:
        names = list(self.events) if order is None else list(order)
        return InMemoryEventSource(self.events[name] for name in names)

    def resolve(
        self, *state_sets: Mapping[StateKey, str] | str, **kwargs: Any
    ) -> dict[StateKey, str]:
        """Resolve the given states (or the states after the named events); names out."""
        sets = [self.state_after(s) if isinstance(s, str) else dict(s) for s in state_sets]
        return self.named(resolve_state(self.room_version, sets, self.source(), **kwargs))

    # --- building --------------------------------------------------------------------

    def add(
        self,
        name: str,
        event_type: str,
        sender: str,
        content: dict[str, Any],
        state_key: str | None = None,
        *,
        parent: str | None,
        prev: Sequence[str] | None = None,
        state_before: Mapping[StateKey, str] | None = None,
        ts: int | None = None,
        rejected: bool = False,
    ) -> Event:
        """Add an event after ``parent`` (the state before it is the state after
        ``parent`` unless ``state_before`` is given); its prev events are ``prev``
        (default: the parent)."""
        assert name not in self.events, name
        rv = self.room_version
        if state_before is None:
            state_before = self._state_after[parent] if parent is not None else {}
        if prev is None:
            prev = [parent] if parent is not None else []
        if ts is None:
            self._ts += 1
            ts = self._ts
        else:
            self._ts = max(self._ts, ts)
        depth = 1 + max((self._depth[p] for p in prev), default=0)

        auth_keys = self._auth_selection(event_type, sender, state_key, content)
        auth_ids = [state_before[key] for key in auth_keys if key in state_before]

        pdu: dict[str, Any] = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "origin_server_ts": ts,
            "depth": depth,
            "prev_events": self._references([self.id(p) for p in prev]),
            "auth_events": self._references(auth_ids),
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        is_create = event_type == "m.room.create"
        if not (is_create and rv.room_id_is_create_event_hash):
            pdu["room_id"] = self.room_id
        if rv.event_format is EventFormat.V1:
            pdu["event_id"] = f"${name}:a.example"
            pdu["origin"] = sender.split(":", 1)[1]
        add_content_hash(pdu)
        pdu["signatures"] = {}
        event = make_event(pdu, rv)
        if is_create and state_key == "":
            self.room_id = (
                room_id_from_create_event(pdu, rv)
                if rv.room_id_is_create_event_hash
                else self.room_id
            )
        if rejected:
            event.rejected_reason = "auth"

        self.events[name] = event
        self._names[event.event_id] = name
        self._depth[name] = depth
        after = dict(state_before)
        if state_key is not None and not rejected:
            after[(event_type, state_key)] = event.event_id
        self._state_after[name] = after
        return event

    def _references(self, event_ids: Sequence[str]) -> list[Any]:
        if self.room_version.event_format is EventFormat.V1:
            return [[event_id, {"sha256": "aGFzaA"}] for event_id in event_ids]
        return list(event_ids)

    def _auth_selection(
        self, event_type: str, sender: str, state_key: str | None, content: Mapping[str, Any]
    ) -> list[StateKey]:
        """The server-server spec's auth events selection, as state keys."""
        if event_type == "m.room.create":
            return []
        keys: list[StateKey] = []
        if not self.room_version.room_id_is_create_event_hash:
            keys.append(CREATE)
        keys += [POWER_LEVELS, member_key(sender)]
        if event_type == "m.room.member" and state_key is not None:
            if member_key(state_key) not in keys:
                keys.append(member_key(state_key))
            membership = content.get("membership")
            if membership in ("join", "invite", "knock"):
                keys.append(JOIN_RULES)
            via = content.get("join_authorised_via_users_server")
            if membership == "join" and isinstance(via, str) and member_key(via) not in keys:
                keys.append(member_key(via))
        return keys

    # --- conveniences ----------------------------------------------------------------

    def power_levels_content(self, users: Mapping[str, int], **extra: Any) -> dict[str, Any]:
        everyone = dict(users)
        if self.room_version.creators_have_infinite_power:
            # v12 creators may not appear in `users`; their power is infinite anyway.
            everyone.pop(self.creator, None)
        else:
            everyone.setdefault(self.creator, 100)
        content: dict[str, Any] = {
            "users": everyone,
            "users_default": 0,
            "events_default": 0,
            "state_default": 50,
            "ban": 50,
            "kick": 50,
            "redact": 50,
            "invite": 0,
            "events": {},
        }
        content.update(extra)
        return content

    def create(self, name: str = "CREATE") -> Event:
        content: dict[str, Any] = {"room_version": self.room_version.identifier}
        if not self.room_version.implicit_room_creator:
            content["creator"] = self.creator
        return self.add(name, "m.room.create", self.creator, content, "", parent=None)

    def member(
        self, name: str, sender: str, target: str, membership: str, *, parent: str, **kw: Any
    ) -> Event:
        return self.add(
            name, "m.room.member", sender, {"membership": membership}, target, parent=parent, **kw
        )

    def join(self, name: str, user: str, *, parent: str, **kw: Any) -> Event:
        return self.member(name, user, user, "join", parent=parent, **kw)

    def power_levels(
        self,
        name: str,
        sender: str,
        users: Mapping[str, int],
        *,
        parent: str,
        extra: Mapping[str, Any] | None = None,
        **kw: Any,
    ) -> Event:
        content = self.power_levels_content(users, **(extra or {}))
        return self.add(name, "m.room.power_levels", sender, content, "", parent=parent, **kw)

    def join_rules(self, name: str, sender: str, rule: str, *, parent: str, **kw: Any) -> Event:
        return self.add(
            name, "m.room.join_rules", sender, {"join_rule": rule}, "", parent=parent, **kw
        )

    def topic(self, name: str, sender: str, topic: str, *, parent: str, **kw: Any) -> Event:
        return self.add(name, "m.room.topic", sender, {"topic": topic}, "", parent=parent, **kw)

    def initial_room(self, users: Mapping[str, int] | None = None) -> str:
        """create, alice joins, power levels, public join rules, bob and charlie join.

        Returns the name of the last event ("IMC").
        """
        self.create()
        self.join("IMA", self.creator, parent="CREATE")
        self.power_levels("IPOWER", self.creator, users or {}, parent="IMA")
        self.join_rules("IJR", self.creator, "public", parent="IPOWER")
        self.join("IMB", BOB, parent="IJR")
        self.join("IMC", CHARLIE, parent="IMB")
        return "IMC"
