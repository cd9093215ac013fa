"""Building, authorising, signing and persisting this server's own events.

Every local event (a message, a state change, a membership change, the events of a new
room) goes through ``EventCreator``: under the room's lock it takes the room head, builds
the PDU for the room version, signs it, checks it against the auth rules, and persists it
with everything it changes in one transaction; then it notifies.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from signedjson.types import SigningKey

from homeserver.auth import AuthError
from homeserver.auth.rules import check_auth_rules
from homeserver.auth.selection import select_auth_events
from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.events.errors import EventSizeError, EventValidationError
from homeserver.events.hashing import event_reference, make_event, room_id_from_create_event
from homeserver.events.model import Event, JsonDict, StateKey
from homeserver.events.signing import sign_event
from homeserver.events.validation import check_size_limits
from homeserver.notifier import Notifier, RoomEventsNotice
from homeserver.room_versions import EventFormat, RoomVersion
from homeserver.util.linearizer import Linearizer
from storage.events import EventStore, NewRoom, RoomHead, TxnRecord

# A new event points at no more than this many forward extremities (spec limit is 20).
MAX_PREV_EVENTS = 10


@dataclass(frozen=True)
class EventSpec:
    """What a local event says, before it is placed in the DAG."""

    type: str
    sender: str
    content: JsonDict
    state_key: str | None = None
    redacts: str | None = None


def request_hash(*parts: Any) -> str:
    """A fingerprint of a client request, to tell a retried transaction from a reused ID."""
    data = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


class EventCreator:
    def __init__(
        self,
        *,
        server_name: str,
        signing_key: SigningKey,
        store: EventStore,
        notifier: Notifier,
        now_ms: Callable[[], int],
    ) -> None:
        self.server_name = server_name
        self._signing_key = signing_key
        self.store = store
        self._notifier = notifier
        self._now_ms = now_ms
        self.room_locks = Linearizer()

    async def send(
        self,
        room_id: str,
        spec: EventSpec,
        *,
        txn: TxnRecord | None = None,
        check: Callable[[RoomHead], None] | None = None,
        countersign: Callable[[Event], Awaitable[Event]] | None = None,
    ) -> Event:
        """Create and persist one event in an existing room; returns it.

        ``check`` runs under the room lock against the room head, for checks that must
        see the state the event will be authorised against (e.g. "is this a no-op?").
        ``countersign`` gets the built event before it is persisted and returns the event
        to persist instead (an invite of a remote user, signed by their server too).
        A state event identical to the current one is not sent again: the existing event
        is returned, as Synapse does.
        """
        async with self.room_locks.lock(room_id):
            head = await self.store.get_room_head(room_id)
            if head is None:
                raise not_found(f"Unknown room {room_id}")
            if check is not None:
                check(head)
            if txn is not None:
                earlier = await self.store.get_txn_event(
                    txn.user_id, txn.device_id, txn.txn_id, txn.scope
                )
                if earlier is not None:
                    existing = await self._txn_retry(earlier, txn)
                    if existing is not None:
                        return existing
            duplicate = await self._identical_state(head, spec)
            if duplicate is not None:
                return duplicate
            event = await self._build(head, room_id, spec, head.forward_extremities)
            if countersign is not None:
                event = await countersign(event)
            result = await self.store.persist_local_events(
                room_id, [event], head=head, txn=txn, now_ms=self._now_ms()
            )
        self._notify(room_id, result.events)
        return event

    async def create_room(
        self,
        room_version: RoomVersion,
        creator: str,
        specs: Sequence[EventSpec],
        *,
        is_public: bool = False,
    ) -> tuple[str, list[Event]]:
        """Create a room from its first events (``specs[0]`` is ``m.room.create``).

        All events are built and authorised first, then persisted in one transaction, so
        a room is either fully created or not at all.
        """
        now = self._now_ms()
        for attempt in range(5):
            room_id, events = await self._build_room(room_version, specs, now + attempt)
            async with self.room_locks.lock(room_id):
                # A v12 room ID is the create event's hash: the same creator asking twice
                # in the same millisecond would get the same ID. Then the create event is
                # rebuilt a millisecond later, which gives another ID.
                if await self.store.get_room_version(room_id) is not None:
                    continue
                result = await self.store.persist_local_events(
                    room_id,
                    events,
                    head=None,
                    new_room=NewRoom(room_id, room_version, creator, now, is_public),
                    now_ms=now,
                )
                break
        else:
            raise MatrixError(500, "M_UNKNOWN", "Could not choose a free room ID")
        self._notify(room_id, result.events)
        return room_id, events

    async def _build_room(
        self, room_version: RoomVersion, specs: Sequence[EventSpec], now: int
    ) -> tuple[str, list[Event]]:
        """The first events of a new room, built and authorised in order (not persisted)."""
        create_spec = specs[0]
        room_id = None
        if not room_version.room_id_is_create_event_hash:
            room_id = f"!{_random_string(18)}:{self.server_name}"
        events: list[Event] = []
        state: dict[StateKey, str] = {}
        auth_cache: dict[str, Event] = {}
        prev: tuple[str, ...] = ()
        depth = 0
        for spec in specs:
            head = RoomHead(room_version, prev, depth, state, None, 0)
            if spec is create_spec:
                pdu = self._pdu(room_version, room_id, spec, [], [], 1, now)
                sign_event(pdu, self.server_name, self._signing_key, room_version)
                if room_version.room_id_is_create_event_hash:
                    room_id = room_id_from_create_event(pdu, room_version)
                event = self._finish(pdu, room_version)
                _authorise(event, {})
            else:
                assert room_id is not None
                event = await self._build(head, room_id, spec, prev, known=auth_cache)
            events.append(event)
            auth_cache[event.event_id] = event
            if event.is_state():
                state = {**state, event.state_pair: event.event_id}
            prev = (event.event_id,)
            depth = event.depth
        assert room_id is not None
        return room_id, events

    # --- building ---------------------------------------------------------------------

    async def build(self, head: RoomHead, room_id: str, spec: EventSpec) -> Event:
        """An event on ``head``, signed and authorised but not persisted (the template a
        resident server offers in ``make_join``/``make_leave``/``make_knock``)."""
        return await self._build(head, room_id, spec, head.forward_extremities)

    async def _build(
        self,
        head: RoomHead,
        room_id: str,
        spec: EventSpec,
        prev_event_ids: Sequence[str],
        known: Mapping[str, Event] | None = None,
    ) -> Event:
        room_version = head.room_version
        prev_ids = list(prev_event_ids)[-MAX_PREV_EVENTS:]
        auth_ids = select_auth_events(
            room_version, spec.type, spec.sender, spec.state_key, spec.content, head.state
        )
        needed = set(prev_ids) | set(auth_ids)
        create_id = head.state.get(("m.room.create", ""))
        if create_id is not None:
            needed.add(create_id)
        fetched = dict(known or {})
        missing = [event_id for event_id in needed if event_id not in fetched]
        if missing:
            fetched.update(await self.store.get_events(missing))
        if room_version.event_format is EventFormat.V1:
            prev_refs: list[Any] = [event_reference(fetched[e]) for e in prev_ids]
            auth_refs: list[Any] = [event_reference(fetched[e]) for e in auth_ids]
        else:
            prev_refs, auth_refs = list(prev_ids), list(auth_ids)
        depth = max([head.max_depth, *(fetched[e].depth for e in prev_ids)]) + 1
        pdu = self._pdu(room_version, room_id, spec, prev_refs, auth_refs, depth, self._now_ms())
        sign_event(pdu, self.server_name, self._signing_key, room_version)
        event = self._finish(pdu, room_version)
        auth_events = {fetched[e].state_pair: fetched[e] for e in auth_ids}
        if create_id is not None:
            auth_events[("m.room.create", "")] = fetched[create_id]
        _authorise(event, auth_events)
        return event

    def _pdu(
        self,
        room_version: RoomVersion,
        room_id: str | None,
        spec: EventSpec,
        prev_events: list[Any],
        auth_events: list[Any],
        depth: int,
        now: int,
    ) -> JsonDict:
        content = dict(spec.content)
        pdu: JsonDict = {
            "type": spec.type,
            "sender": spec.sender,
            "content": content,
            "depth": depth,
            "origin_server_ts": now,
            "prev_events": prev_events,
            "auth_events": auth_events,
        }
        if room_id is not None:
            pdu["room_id"] = room_id
        if spec.state_key is not None:
            pdu["state_key"] = spec.state_key
        if not room_version.implicit_room_creator:
            pdu["origin"] = self.server_name  # dropped from the event format in v11
        if room_version.uses_opaque_event_ids:
            pdu["event_id"] = f"${_random_string(18)}:{self.server_name}"
        if spec.redacts is not None:
            if room_version.redacts_in_content:
                content["redacts"] = spec.redacts
            else:
                pdu["redacts"] = spec.redacts
        return pdu

    def _finish(self, pdu: JsonDict, room_version: RoomVersion) -> Event:
        try:
            check_size_limits(pdu, room_version)
            return make_event(pdu, room_version)
        except EventSizeError as e:
            raise MatrixError(413, "M_TOO_LARGE", str(e)) from None
        except EventValidationError as e:
            raise MatrixError(400, "M_BAD_JSON", str(e)) from None

    async def _identical_state(self, head: RoomHead, spec: EventSpec) -> Event | None:
        if spec.state_key is None:
            return None
        current_id = head.state.get((spec.type, spec.state_key))
        if current_id is None:
            return None
        current = await self.store.get_event(current_id)
        if (
            current is not None
            and current.sender == spec.sender
            and current.content == spec.content
        ):
            return current
        return None

    async def _txn_retry(self, earlier: tuple[str, str], txn: TxnRecord) -> Event | None:
        event_id, earlier_hash = earlier
        if earlier_hash != txn.request_hash:
            raise MatrixError(
                400,
                "M_INVALID_PARAM",
                f"Transaction ID {txn.txn_id!r} was already used for a different request",
            )
        return await self.store.get_event(event_id)

    def _notify(self, room_id: str, events: Sequence[Event]) -> None:
        self._notifier.on_new_room_events(
            RoomEventsNotice(room_id, events, self.store.stream_ids.current_token())
        )


def _authorise(event: Event, auth_events: Mapping[StateKey, Event]) -> None:
    try:
        check_auth_rules(event, auth_events)
    except AuthError as e:
        raise forbidden(e.reason) from None


def _random_string(length: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(length))
