"""Events from other servers: the spec's "Checks performed on receipt of a PDU".

For each PDU, in order:

1. it has the format of the room version, else it is dropped;
2. it carries the required valid signatures, else it is dropped;
3. its content hash matches, else it is redacted and goes on;
4. it passes the auth rules against its own auth events, else it is rejected;
5. it passes them against the state before it (the states at its prev events,
   resolved when they differ), else it is rejected;
6. it passes them against the room's current state, else it is soft-failed: stored,
   but neither shown to clients nor built upon.

Missing prev events are fetched from the sending server (``/get_missing_events``); if
they cannot all be had, the state at the event is asked for instead (``/state_ids``) and
the gap is left. Missing auth events are fetched and checked as outliers first. A
rejected or soft-failed event never changes the room's current state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from homeserver.auth import AuthError
from homeserver.auth.rules import check_auth_events_shape, check_auth_rules
from homeserver.auth.selection import auth_types_for_event
from homeserver.events.errors import EventSizeError, EventValidationError
from homeserver.events.formats import accept_received_unsigned
from homeserver.events.hashing import make_event
from homeserver.events.model import Event, JsonDict, StateKey
from homeserver.events.signing import KeySource, required_signatures, verify_event
from homeserver.events.validation import validate_pdu
from homeserver.notifier import Notifier, RoomEventsNotice
from homeserver.room_versions import RoomVersion
from homeserver.util.linearizer import Linearizer
from storage.events import EventStore, RoomHead, StateAt
from storage.state_source import resolve_state_in_db

logger = logging.getLogger(__name__)

# How many missing prev events are fetched before giving up and asking for the state.
MISSING_EVENTS_LIMIT = 10
CREATE_KEY: StateKey = ("m.room.create", "")


class KeyFetcher(Protocol):
    async def get_verify_keys(
        self, requests: Mapping[str, set[str]], minimum_valid_until_ts: int
    ) -> KeySource:
        """The keys asked for (server name -> key IDs) that could be fetched."""


class EventFetcher(Protocol):
    """What the inbound path asks of other servers (federation/client.py implements it)."""

    async def get_missing_events(
        self,
        destination: str,
        room_id: str,
        earliest_events: Sequence[str],
        latest_events: Sequence[str],
        limit: int,
        min_depth: int,
    ) -> list[JsonDict]: ...

    async def get_event(self, destination: str, event_id: str) -> JsonDict | None: ...

    async def get_state_ids(
        self, destination: str, room_id: str, event_id: str
    ) -> tuple[list[str], list[str]]:
        """(state event IDs, auth chain event IDs) at ``event_id``."""
        ...


class NoFetcher:
    """Used until the federation client is wired: nothing can be fetched."""

    async def get_missing_events(
        self,
        destination: str,
        room_id: str,
        earliest_events: Sequence[str],
        latest_events: Sequence[str],
        limit: int,
        min_depth: int,
    ) -> list[JsonDict]:
        return []

    async def get_event(self, destination: str, event_id: str) -> JsonDict | None:
        return None

    async def get_state_ids(
        self, destination: str, room_id: str, event_id: str
    ) -> tuple[list[str], list[str]]:
        return [], []


@dataclass(frozen=True)
class PduOutcome:
    event_id: str | None
    # "persisted", "soft_failed", "rejected", "duplicate", or "dropped"
    status: str
    reason: str | None = None


class FederationEventHandler:
    def __init__(
        self,
        *,
        store: EventStore,
        notifier: Notifier,
        room_locks: Linearizer,
        keys: KeyFetcher,
        fetcher: EventFetcher,
        now_ms: Any,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.room_locks = room_locks
        self.keys = keys
        self.fetcher = fetcher
        self.now_ms = now_ms

    # --- entry points -----------------------------------------------------------------

    async def on_receive_pdu(self, origin: str, room_id: str, pdu: JsonDict) -> PduOutcome:
        """Handle one PDU of a transaction from ``origin`` for a room we are in."""
        room_version = await self.store.get_room_version(room_id)
        if room_version is None:
            return PduOutcome(None, "dropped", f"unknown room {room_id}")
        event = await self._check_format_and_signatures(pdu, room_version)
        if isinstance(event, PduOutcome):
            return event
        if event.room_id != room_id:
            return PduOutcome(event.event_id, "dropped", "event is for another room")
        async with self.room_locks.lock(room_id):
            if await self.store.get_event(event.event_id) is not None:
                return PduOutcome(event.event_id, "duplicate")
            head = await self.store.get_room_head(room_id)
            if head is None:
                return PduOutcome(event.event_id, "dropped", "room has no events")
            await self._fetch_missing_prev_events(origin, event, head)
            outcome = await self._process(origin, event, head)
        return outcome

    async def verify_pdu(self, pdu: JsonDict, room_version: RoomVersion) -> Event | PduOutcome:
        """Steps 1-3 for a PDU that comes outside a transaction (a send_join answer, an
        invite, a join handed to us): the event (redacted on a hash mismatch), or why it
        was dropped."""
        return await self._check_format_and_signatures(pdu, room_version)

    async def on_backfilled_pdus(
        self, origin: str, room_id: str, pdus: Sequence[JsonDict]
    ) -> list[PduOutcome]:
        """History from before what the room's timeline holds (a ``/backfill`` answer).

        Each event goes through steps 1-5 of the receipt checks, oldest first, against
        the state before it: its prev events' states when we hold them, else the state
        ``origin`` reports at it (``/state_ids``); an event whose state cannot be had is
        dropped rather than judged by the wrong state. Backfilled events are history, so
        there is no soft-fail step, no notification and no change to the room's head
        (``persist_events(backfilled=True)``).
        """
        room_version = await self.store.get_room_version(room_id)
        if room_version is None:
            return [PduOutcome(None, "dropped", f"unknown room {room_id}")]
        outcomes: list[PduOutcome] = []
        checked: dict[str, Event] = {}
        for pdu in pdus:
            event = await self._check_format_and_signatures(pdu, room_version)
            if isinstance(event, PduOutcome):
                outcomes.append(event)
            elif event.room_id != room_id:
                outcomes.append(PduOutcome(event.event_id, "dropped", "event is for another room"))
            else:
                checked[event.event_id] = event
        async with self.room_locks.lock(room_id):
            held = await self.store.get_events(checked)
            for event in sorted(checked.values(), key=lambda e: e.depth):
                known = held.get(event.event_id)
                if known is not None and not known.internal_metadata.get("outlier"):
                    outcomes.append(PduOutcome(event.event_id, "duplicate"))
                    continue
                outcomes.append(await self._process_backfilled(origin, event))
        return outcomes

    async def _process_backfilled(self, origin: str, event: Event) -> PduOutcome:
        head = await self.store.get_room_head(event.room_id)
        if head is None:
            return PduOutcome(event.event_id, "dropped", "room has no events")
        prevs = await self.store.get_events(event.prev_event_ids)
        in_timeline = [p for p in prevs.values() if not p.internal_metadata.get("outlier")]
        if not event.prev_event_ids:
            state_at = StateAt({})  # the create event: the room begins here
        elif len(in_timeline) == len(event.prev_event_ids):
            state_at = await self._state_before(origin, event, head)
        else:
            remote = await self._remote_state_at(origin, event)
            if remote is None:
                return PduOutcome(event.event_id, "dropped", "no state for a backfilled event")
            state_at = StateAt(remote)
        auth_events, listed = await self._auth_events_of(origin, event)
        create = head.state.get(CREATE_KEY)
        create_event = (
            await self.store.get_event(create) if create is not None else None
        ) or auth_events.get(CREATE_KEY)
        rejected = event.rejected_reason
        if rejected is None:
            rejected = _auth_failure(event, auth_events, create_event, listed=listed)
        if rejected is None:
            rejected = await self._check_against_state(event, state_at.state, create_event)
        if rejected is not None:
            event.rejected_reason = rejected
            logger.info("rejecting backfilled %s from %s: %s", event.event_id, origin, rejected)
        await self.store.persist_events(
            event.room_id,
            [event],
            head=head,
            now_ms=self.now_ms(),
            state_at={event.event_id: state_at},
            backfilled=True,
        )
        if rejected is not None:
            return PduOutcome(event.event_id, "rejected", rejected)
        return PduOutcome(event.event_id, "persisted")

    # --- the checks -------------------------------------------------------------------

    async def _check_format_and_signatures(
        self, pdu: JsonDict, room_version: RoomVersion
    ) -> Event | PduOutcome:
        # What a remote server put in `unsigned` is not signed: keep only what it may set
        # (never e.g. `redacted_because` or `prev_content`, which are ours to compute).
        pdu = dict(pdu)
        accept_received_unsigned(pdu, self.now_ms())
        try:
            validate_pdu(pdu, room_version)
            event = make_event(dict(pdu), room_version)
        except EventSizeError as e:
            if not e.persist_as_rejected:
                return PduOutcome(None, "dropped", str(e))
            event = make_event(dict(pdu), room_version)
            event.rejected_reason = f"size: {e}"
            return event
        except EventValidationError as e:
            return PduOutcome(None, "dropped", f"malformed: {e}")
        requests: dict[str, set[str]] = {}
        try:
            for server in required_signatures(event):
                signed = event.signatures.get(server)
                if isinstance(signed, dict):
                    requests.setdefault(server, set()).update(
                        k for k in signed if isinstance(k, str)
                    )
            keys = await self.keys.get_verify_keys(requests, event.origin_server_ts)
            checked = verify_event(event, keys)
        except EventValidationError as e:
            return PduOutcome(event.event_id, "dropped", f"signatures: {e}")
        if checked is not event:
            logger.info("content hash mismatch on %s: keeping it redacted", event.event_id)
        return checked

    async def _fetch_missing_prev_events(self, origin: str, event: Event, head: RoomHead) -> None:
        known = await self.store.get_events(event.prev_event_ids)
        if len(known) == len(event.prev_event_ids):
            return
        try:
            fetched = await self.fetcher.get_missing_events(
                origin,
                event.room_id,
                list(head.forward_extremities),
                [event.event_id],
                MISSING_EVENTS_LIMIT,
                max(0, head.max_depth - MISSING_EVENTS_LIMIT),
            )
        except Exception as e:  # a remote failure only means we go on with the state
            logger.info("get_missing_events from %s failed: %s", origin, e)
            return
        # Oldest first, so each can find its own prev events.
        fetched.sort(key=lambda p: p.get("depth", 0) if isinstance(p.get("depth"), int) else 0)
        for pdu in fetched:
            missing = await self._check_format_and_signatures(pdu, head.room_version)
            if isinstance(missing, PduOutcome) or missing.room_id != event.room_id:
                continue
            if await self.store.get_event(missing.event_id) is not None:
                continue
            current = await self.store.get_room_head(event.room_id)
            assert current is not None
            await self._process(origin, missing, current)

    async def _process(self, origin: str, event: Event, head: RoomHead) -> PduOutcome:
        auth_events, listed = await self._auth_events_of(origin, event)
        create = head.state.get(CREATE_KEY)
        create_event = (
            await self.store.get_event(create) if create is not None else None
        ) or auth_events.get(CREATE_KEY)

        rejected = event.rejected_reason
        if rejected is None:
            rejected = _auth_failure(event, auth_events, create_event, listed=listed)

        state_at = await self._state_before(origin, event, head)
        if rejected is None:
            rejected = await self._check_against_state(event, state_at.state, create_event)
        soft_failed = False
        if rejected is None:
            soft = await self._check_against_state(event, head.state, create_event)
            if soft is not None:
                soft_failed = True
                event.internal_metadata["soft_failed"] = True
                logger.info("soft-failing %s from %s: %s", event.event_id, origin, soft)
        if rejected is not None:
            event.rejected_reason = rejected
            logger.info("rejecting %s from %s: %s", event.event_id, origin, rejected)

        current_state = await self._new_current_state(event, head, state_at.state)
        result = await self.store.persist_events(
            event.room_id,
            [event],
            head=head,
            now_ms=self.now_ms(),
            state_at={event.event_id: state_at},
            current_state=current_state,
        )
        if rejected is None and not soft_failed:
            self.notifier.on_new_room_events(
                RoomEventsNotice(
                    event.room_id, result.events, self.store.stream_ids.current_token()
                )
            )
        if rejected is not None:
            return PduOutcome(event.event_id, "rejected", rejected)
        return PduOutcome(event.event_id, "soft_failed" if soft_failed else "persisted")

    async def _auth_events_of(
        self, origin: str, event: Event
    ) -> tuple[dict[StateKey, Event], list[Event]]:
        """The event's own auth events (by state key, and as listed), fetched and stored
        as outliers when missing."""
        wanted = list(event.auth_event_ids)
        found = dict(await self.store.get_events(wanted))
        for event_id in [e for e in wanted if e not in found]:
            fetched = await self._fetch_outlier(origin, event_id, event.room_version)
            if fetched is not None:
                found[event_id] = fetched
        auth: dict[StateKey, Event] = {}
        listed = [found[e] for e in wanted if e in found]
        for auth_event in listed:
            if auth_event.is_state() and auth_event.rejected_reason is None:
                auth[auth_event.state_pair] = auth_event
        if event.room_version.room_id_is_create_event_hash and CREATE_KEY not in auth:
            create = await self.store.get_event("$" + event.room_id[1:])
            if create is not None:
                auth[CREATE_KEY] = create
        return auth, listed

    async def _fetch_outlier(
        self, origin: str, event_id: str, room_version: RoomVersion, depth: int = 0
    ) -> Event | None:
        if depth > 10:
            return None
        try:
            pdu = await self.fetcher.get_event(origin, event_id)
        except Exception as e:
            logger.info("fetching %s from %s failed: %s", event_id, origin, e)
            return None
        if pdu is None:
            return None
        event = await self._check_format_and_signatures(pdu, room_version)
        if isinstance(event, PduOutcome) or event.event_id != event_id:
            return None
        auth_ids = list(event.auth_event_ids)
        found = dict(await self.store.get_events(auth_ids))
        for auth_id in [a for a in auth_ids if a not in found]:
            fetched = await self._fetch_outlier(origin, auth_id, room_version, depth + 1)
            if fetched is not None:
                found[auth_id] = fetched
        auth = {e.state_pair: e for e in found.values() if e.is_state() and not e.rejected_reason}
        create_event = auth.get(CREATE_KEY)
        if event.type == "m.room.create":
            create_event = event
        event.rejected_reason = event.rejected_reason or _auth_failure(
            event,
            auth,
            create_event,
            listed=[found[a] for a in auth_ids if a in found],
        )
        event.internal_metadata["outlier"] = True
        head = await self.store.get_room_head(event.room_id)
        await self.store.persist_events(event.room_id, [event], head=head, now_ms=self.now_ms())
        return event

    async def _state_before(self, origin: str, event: Event, head: RoomHead) -> StateAt:
        prevs = await self.store.get_events(event.prev_event_ids)
        usable = [p for p in prevs.values() if not p.internal_metadata.get("outlier")]
        if len(usable) < len(event.prev_event_ids):
            # A gap: take the state at the event from the server that sent it.
            remote = await self._remote_state_at(origin, event)
            if remote is not None:
                return StateAt(remote)
        states: list[dict[StateKey, str]] = []
        groups: list[int | None] = []
        for prev in usable:
            after = await self.store.get_state_ids_after_event(prev.event_id)
            states.append(after or {})
            groups.append(await self._group_of(prev.event_id))
        if not states:
            return StateAt(dict(head.state))
        if len(states) == 1 or all(s == states[0] for s in states):
            return StateAt(states[0], group=groups[0])
        resolved = await resolve_state_in_db(self.store.db, event.room_version, states)
        return StateAt(resolved, base_group=groups[0], base_state=states[0])

    async def _group_of(self, event_id: str) -> int | None:
        rows = await self.store.db.execute(
            "get_state_group_of_event",
            "SELECT state_group FROM events WHERE event_id = ?",
            event_id,
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    async def _remote_state_at(self, origin: str, event: Event) -> dict[StateKey, str] | None:
        try:
            state_ids, auth_ids = await self.fetcher.get_state_ids(
                origin, event.room_id, event.event_id
            )
        except Exception as e:
            logger.info("state_ids from %s failed: %s", origin, e)
            return None
        if not state_ids:
            return None
        have = dict(await self.store.get_events([*state_ids, *auth_ids]))
        for event_id in [e for e in [*auth_ids, *state_ids] if e not in have]:
            fetched = await self._fetch_outlier(origin, event_id, event.room_version)
            if fetched is not None:
                have[event_id] = fetched
        state = {}
        for event_id in state_ids:
            state_event = have.get(event_id)
            if state_event is not None and state_event.is_state():
                state[state_event.state_pair] = event_id
        return state

    async def _check_against_state(
        self, event: Event, state: Mapping[StateKey, str], create_event: Event | None
    ) -> str | None:
        keys = auth_types_for_event(
            event.room_version, event.type, event.sender, event.state_key, event.content
        )
        ids = [state[k] for k in keys if k in state]
        events = await self.store.get_events(ids)
        auth = {e.state_pair: e for e in events.values() if e.is_state()}
        if create_event is not None:
            auth.setdefault(CREATE_KEY, create_event)
        return _auth_failure(event, auth, create_event)

    async def _new_current_state(
        self, event: Event, head: RoomHead, state_before: Mapping[StateKey, str]
    ) -> dict[StateKey, str]:
        """The room state once ``event`` is in: the resolution of the forward extremities'
        states (the event's own, if it extends every extremity)."""
        if event.rejected_reason is not None or event.internal_metadata.get("soft_failed"):
            return dict(head.state)
        after = dict(state_before)
        if event.is_state():
            after[event.state_pair] = event.event_id
        others = [e for e in head.forward_extremities if e not in event.prev_event_ids]
        if not others:
            return after
        states = [after]
        for extremity in others:
            states.append(await self.store.get_state_ids_after_event(extremity) or {})
        return await resolve_state_in_db(
            self.store.db, event.room_version, states, known={event.event_id: event}
        )


def auth_failure(
    event: Event,
    auth_events: Mapping[StateKey, Event],
    create_event: Event | None,
    *,
    listed: Iterable[Event] | None = None,
) -> str | None:
    """Why ``event`` fails the auth rules against ``auth_events`` (None if it passes)."""
    return _auth_failure(event, auth_events, create_event, listed=listed)


def _auth_failure(
    event: Event,
    auth_events: Mapping[StateKey, Event],
    create_event: Event | None,
    *,
    listed: Iterable[Event] | None = None,
) -> str | None:
    """Why ``event`` fails the auth rules against ``auth_events`` (None if it passes);
    with ``listed``, its own auth_events list is checked first."""
    try:
        if listed is not None:
            check_auth_events_shape(event, list(listed))
        auth = dict(auth_events)
        if create_event is not None and event.type != "m.room.create":
            auth.setdefault(CREATE_KEY, create_event)
        check_auth_rules(event, auth)
    except AuthError as e:
        return e.reason
    return None
