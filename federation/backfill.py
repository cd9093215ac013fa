"""Room history from other servers, for local users reading back past what we hold.

A room joined over federation starts, on this server, at the join: the events before it
are reachable only through the gaps ("backward extremities": prev events we hold no
timeline copy of). When ``/messages`` runs out of events below where it stands and a gap
lies there, ``maybe_backfill`` asks a server in the room for the events before the gap
(``GET /backfill``), oldest servers first, and hands them to the inbound checks as
backfilled events. Those are stored with negative stream orderings (see
``EventStore.persist_events(backfilled=True)``): they sort by depth into the room's DAG
order for pagination, while /sync, which reads forwards from its stream token, never
sees old history arrive as new events.

``timestamp_to_event`` asks the servers in the room when the event we found sits next to a
gap in what we hold, and keeps whichever answer is closer, fetching a remote event we do
not hold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from federation.client import FederationClient, FederationError, federation_path
from federation.inbound import FederationEventHandler
from federation.queries import FederationQueries
from homeserver.util.linearizer import Linearizer
from storage.events import EventStore
from storage.federation_history import FederationHistoryStore

logger = logging.getLogger(__name__)

# Events asked for per /backfill request (as Synapse), and gaps named per request.
BACKFILL_LIMIT = 100
MAX_EXTREMITIES_PER_REQUEST = 5
# Servers tried before giving up on one backfill.
MAX_SERVERS_TRIED = 5


class Backfiller:
    def __init__(
        self,
        *,
        server_name: str,
        store: EventStore,
        federation_history: FederationHistoryStore,
        client: FederationClient,
        events: FederationEventHandler,
        queries: FederationQueries,
        now_ms: Callable[[], int],
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.federation_history = federation_history
        self.client = client
        self.events = events
        self.queries = queries
        self.now_ms = now_ms
        # One backfill per room at a time: concurrent readers wait for it and then find
        # the events in place rather than fetch them again.
        self._rooms = Linearizer()

    async def maybe_backfill(self, room_id: str, depth: int) -> bool:
        """Fill the gaps the room has below ``depth`` from another server; whether any
        event was added."""
        async with self._rooms.lock(room_id):
            gaps = await self._gaps_below(room_id, depth)
            if not gaps:
                return False
            return await self._backfill(room_id, gaps)

    async def _gaps_below(self, room_id: str, depth: int) -> list[str]:
        extremities = await self.federation_history.get_backward_extremities(room_id)
        below = [(d, e) for e, d in extremities if d <= depth]
        # The gaps closest to the reader first.
        below.sort(reverse=True)
        return [e for _, e in below[:MAX_EXTREMITIES_PER_REQUEST]]

    async def _servers_to_try(self, room_id: str) -> list[str]:
        """The servers in the room, the room creator's first: the one most likely to
        hold its whole history."""
        servers = [
            s
            for s in await self.federation_history.get_joined_servers(room_id)
            if s != self.server_name
        ]
        create = await self.store.get_current_state_event(room_id, "m.room.create")
        creator_server = create.sender.split(":", 1)[1] if create is not None else None
        if creator_server in servers:
            servers.remove(creator_server)
            servers.insert(0, creator_server)
        return servers[:MAX_SERVERS_TRIED]

    async def _backfill(self, room_id: str, gaps: list[str]) -> bool:
        for server in await self._servers_to_try(room_id):
            try:
                body = await self.client.get_json(
                    server,
                    federation_path("/_matrix/federation/v1/backfill/%s", room_id),
                    args={"v": gaps, "limit": str(BACKFILL_LIMIT)},
                )
            except FederationError as e:
                logger.info("backfill of %s from %s failed: %s", room_id, server, e)
                continue
            pdus = body.get("pdus") if isinstance(body, dict) else None
            if not isinstance(pdus, list):
                continue
            outcomes = await self.events.on_backfilled_pdus(
                server, room_id, [p for p in pdus if isinstance(p, dict)]
            )
            added = [o for o in outcomes if o.status in ("persisted", "rejected")]
            logger.info(
                "backfilled %d events of %s from %s (%d offered)",
                len(added),
                room_id,
                server,
                len(pdus),
            )
            if added:
                return True
        return False

    async def timestamp_to_event(
        self, room_id: str, timestamp: int, backwards: bool, local: tuple[str, int] | None
    ) -> tuple[str, int] | None:
        """The event closest to ``timestamp`` in the direction asked: ours (``local``),
        unless it sits next to a gap in what we hold (or we found none and the room has
        gaps) and a server in the room knows a closer one, as Synapse decides."""
        if not await self._may_be_closer_elsewhere(room_id, backwards, local):
            return local
        for server in await self._servers_to_try(room_id):
            remote = await self.queries.timestamp_to_event(server, room_id, timestamp, backwards)
            if remote is None:
                continue
            if local is not None and not _closer(remote[1], local[1], backwards):
                return local
            if await self._have_or_fetch(server, room_id, remote[0]):
                return remote
        return local

    async def _may_be_closer_elsewhere(
        self, room_id: str, backwards: bool, local: tuple[str, int] | None
    ) -> bool:
        if local is None:
            return bool(await self.federation_history.get_backward_extremities(room_id))
        if backwards:
            # Searching back: newer events we have not received yet may be closer.
            head = await self.store.get_room_head(room_id)
            return head is not None and local[0] in head.forward_extremities
        # Searching forwards: history missing just before our event may be closer.
        event = await self.store.get_event(local[0])
        if event is None:
            return False
        prevs = await self.store.get_events(event.prev_event_ids)
        return any(
            p not in prevs or prevs[p].internal_metadata.get("outlier")
            for p in event.prev_event_ids
        )

    async def _have_or_fetch(self, server: str, room_id: str, event_id: str) -> bool:
        held = await self.store.get_event(event_id)
        if held is not None and not held.internal_metadata.get("outlier"):
            return True
        try:
            body = await self.client.get_json(
                server, federation_path("/_matrix/federation/v1/event/%s", event_id)
            )
        except FederationError as e:
            logger.info("fetching %s from %s failed: %s", event_id, server, e)
            return False
        pdus = body.get("pdus") if isinstance(body, dict) else None
        if not isinstance(pdus, list) or not pdus or not isinstance(pdus[0], dict):
            return False
        pdu = pdus[0]
        outcomes = await self.events.on_backfilled_pdus(server, room_id, [pdu])
        return any(o.event_id == event_id and o.status == "persisted" for o in outcomes)


def _closer(candidate_ts: int, current_ts: int, backwards: bool) -> bool:
    # Backwards, events are at or before the timestamp: the later one is closer.
    return candidate_ts > current_ts if backwards else candidate_ts < current_ts
