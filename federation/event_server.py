"""Serving a room's events and state to other servers.

Every answer is for one asking server (the X-Matrix origin): it must be in the room (or
the room world-readable, ``check_server_in_room``), and events go through
``filter_events_for_server`` so those it may not see arrive redacted. Events redacted in
the room are served pruned, as every server holds them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from federation.acl import ServerAclChecker
from federation.visibility import check_server_in_room, filter_events_for_server
from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.events.formats import serialize_for_federation
from homeserver.events.model import Event, JsonDict
from homeserver.events.redaction import prune_event
from homeserver.handlers.serialize import EventSerializer
from storage.events import EventStore
from storage.federation_history import FederationHistoryStore
from storage.room_history import RoomHistoryStore

# The most events one /backfill or /get_missing_events answer carries (as Synapse).
MAX_BACKFILL = 100
MAX_MISSING_EVENTS = 20


class FederationEventServer:
    def __init__(
        self,
        *,
        server_name: str,
        store: EventStore,
        history: RoomHistoryStore,
        federation_history: FederationHistoryStore,
        serializer: EventSerializer,
        now_ms: Callable[[], int],
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.history = history
        self.federation_history = federation_history
        self.serializer = serializer
        self.now_ms = now_ms
        # Set by the app. The endpoints whose path names the room are checked by the
        # authenticator; /event names none, so its event's room is checked here.
        self.acl: ServerAclChecker | None = None

    def _transaction(self, pdus: list[JsonDict]) -> JsonDict:
        return {"origin": self.server_name, "origin_server_ts": self.now_ms(), "pdus": pdus}

    async def _pdus(self, events: Sequence[Event]) -> list[JsonDict]:
        redacted = await self.serializer.applicable_redactions(events)
        now = self.now_ms()
        return [
            serialize_for_federation(prune_event(e) if e.event_id in redacted else e, now)
            for e in events
        ]

    async def _visible_pdus(self, origin: str, events: Sequence[Event]) -> list[JsonDict]:
        return await self._pdus(await filter_events_for_server(self.history, origin, events))

    async def _room_event(self, room_id: str | None, event_id: str) -> Event:
        event = await self.store.get_event(event_id)
        if event is None or (room_id is not None and event.room_id != room_id):
            raise not_found(f"Could not find event {event_id}")
        return event

    async def _check_access(self, origin: str, room_id: str) -> None:
        await check_server_in_room(self.store, self.federation_history, room_id, origin)

    # --- GET /event/{eventId} ---------------------------------------------------------

    async def get_event(self, origin: str, event_id: str) -> JsonDict:
        event = await self.store.get_event(event_id)
        if event is None:
            raise not_found(f"Could not find event {event_id}")
        if self.acl is not None:
            await self.acl.check(origin, event.room_id)
        await self._check_access(origin, event.room_id)
        return self._transaction(await self._visible_pdus(origin, [event]))

    # --- GET /state and /state_ids ----------------------------------------------------

    async def _state_before(self, origin: str, room_id: str, event_id: str) -> list[str]:
        await self._check_access(origin, room_id)
        event = await self._room_event(room_id, event_id)
        if event.internal_metadata.get("outlier"):
            raise not_found(f"Could not find the state at event {event_id}")
        state = await self.store.get_state_ids_before_event(event)
        if state is None:
            raise not_found(f"Could not find the state at event {event_id}")
        return list(state.values())

    async def get_state_ids(self, origin: str, room_id: str, event_id: str) -> JsonDict:
        state_ids = await self._state_before(origin, room_id, event_id)
        auth_ids = await self.federation_history.get_auth_chain_ids(state_ids)
        return {"pdu_ids": state_ids, "auth_chain_ids": sorted(auth_ids)}

    async def get_state(self, origin: str, room_id: str, event_id: str) -> JsonDict:
        state_ids = await self._state_before(origin, room_id, event_id)
        auth_ids = await self.federation_history.get_auth_chain_ids(state_ids)
        events = await self.store.get_events([*state_ids, *auth_ids])
        return {
            "pdus": await self._pdus([events[e] for e in state_ids if e in events]),
            "auth_chain": await self._pdus([events[e] for e in sorted(auth_ids) if e in events]),
        }

    # --- GET /event_auth/{roomId}/{eventId} -------------------------------------------

    async def get_event_auth(self, origin: str, room_id: str, event_id: str) -> JsonDict:
        await self._check_access(origin, room_id)
        event = await self._room_event(room_id, event_id)
        auth_ids = await self.federation_history.get_auth_chain_ids(event.auth_event_ids)
        auth_ids.update(event.auth_event_ids)
        events = await self.store.get_events(auth_ids)
        chain = sorted(events.values(), key=lambda e: (e.depth, e.event_id))
        return {"auth_chain": await self._pdus(chain)}

    # --- GET /backfill/{roomId} and POST /get_missing_events/{roomId} ---------------

    async def backfill(
        self, origin: str, room_id: str, event_ids: Sequence[str], limit: int
    ) -> JsonDict:
        await self._check_access(origin, room_id)
        if not event_ids:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing query parameter 'v'")
        limit = max(0, min(limit, MAX_BACKFILL))
        ids = await self.federation_history.get_backfill_event_ids(room_id, event_ids, limit)
        found = await self.store.get_events(ids)
        events = [found[e] for e in ids if e in found]
        return self._transaction(await self._visible_pdus(origin, events))

    async def get_missing_events(self, origin: str, room_id: str, body: JsonDict) -> JsonDict:
        await self._check_access(origin, room_id)
        earliest = _event_id_list(body, "earliest_events")
        latest = _event_id_list(body, "latest_events")
        limit = _int(body, "limit", 10)
        min_depth = _int(body, "min_depth", 0)
        limit = max(0, min(limit, MAX_MISSING_EVENTS))
        ids = await self.federation_history.get_missing_event_ids(
            room_id, earliest, latest, limit, min_depth
        )
        found = await self.store.get_events(ids)
        events = [found[e] for e in ids if e in found]
        return {"events": await self._visible_pdus(origin, events)}

    # --- GET /timestamp_to_event/{roomId} ---------------------------------------------

    async def timestamp_to_event(
        self, origin: str, room_id: str, timestamp: int, backwards: bool
    ) -> JsonDict:
        await self._check_access(origin, room_id)
        found = await self.history.get_event_for_timestamp(room_id, timestamp, backwards)
        if found is None:
            direction = "backward" if backwards else "forward"
            raise not_found(f"Unable to find event from {timestamp} in {direction} direction")
        return {"event_id": found[0], "origin_server_ts": found[1]}


def _event_id_list(body: JsonDict, key: str) -> list[str]:
    value: Any = body.get(key)
    if value is None:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing '{key}'")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_param(f"'{key}' must be a list of event IDs")
    return list(value)


def _int(body: JsonDict, key: str, default: int) -> int:
    value: Any = body.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_param(f"'{key}' must be an integer")
    return value
