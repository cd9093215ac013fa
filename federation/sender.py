"""Sending our events and EDUs to the other servers in our rooms.

One queue per destination, one transaction in flight per destination, at most 50 PDUs
and 100 EDUs each (the spec's limits). A destination that fails is retried with
exponential backoff. What a destination must still receive is recorded per room in the
database, so a long outage or a restart loses nothing: on retry the destination is sent
our newest event in each room it is behind in, and fetches the rest itself with
/get_missing_events (as the spec intends for catching up).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet import defer

from homeserver.events.formats import serialize_for_federation
from homeserver.events.model import Event, JsonDict
from homeserver.notifier import RoomEventsNotice
from storage.events import EventStore
from storage.federation_sender import FederationSenderStore

logger = logging.getLogger(__name__)

MAX_PDUS_PER_TRANSACTION = 50
MAX_EDUS_PER_TRANSACTION = 100
# More than this many queued PDUs and the destination catches up from the database.
MAX_QUEUED_PDUS = 1000
# Key marking a queued EDU that sits in the database outbox (never sent over the wire).
_OUTBOX_ID = "_outbox_id"


class TransactionTransport(Protocol):
    async def put_json(
        self,
        destination: str,
        path: str,
        args: Mapping[str, Any] | None = None,
        data: Any = None,
        timeout: float | None = None,
    ) -> Any: ...


@dataclass
class _Queue:
    pdus: list[Event] = field(default_factory=list)
    edus: list[JsonDict] = field(default_factory=list)
    sending: bool = False
    # The destination missed events: send from the database, not from the queue.
    catching_up: bool = False
    retry_interval_ms: int = 0
    retry_at: float = 0.0
    wakeup: Any = None


class FederationSender:
    def __init__(
        self,
        *,
        server_name: str,
        store: EventStore,
        sender_store: FederationSenderStore,
        transport: TransactionTransport,
        reactor: Any,
        min_retry_ms: int = 5_000,
        max_retry_ms: int = 3_600_000,
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.sender_store = sender_store
        self.transport = transport
        self.reactor = reactor
        self.min_retry_ms = min_retry_ms
        self.max_retry_ms = max_retry_ms
        self._queues: dict[str, _Queue] = {}
        self._txn_ids = itertools.count(int(reactor.seconds() * 1000))
        # Outbox IDs grow across restarts: microseconds since the epoch, then one by one.
        self._outbox_ids = itertools.count(int(reactor.seconds() * 1_000_000))
        self._stopped = False
        # room ID -> (state group, whether another server has a member event there)
        self._room_servers_cache: dict[str, tuple[int | None, bool]] = {}

    # --- feeding the queues -----------------------------------------------------------

    def on_new_room_events(self, notice: RoomEventsNotice) -> None:
        """Notifier listener: queue our own new events for the room's other servers."""
        ours = [e for e in notice.events if _server_of(e.sender) == self.server_name]
        if ours and not self._stopped:
            defer.ensureDeferred(self._queue_room_events(notice.room_id, ours))

    async def _queue_room_events(self, room_id: str, events: list[Event]) -> None:
        try:
            if not await self._room_has_other_servers(room_id):
                return
            # Each event goes to the servers in the room at it, not to those in it by the
            # time we get here: a server that joined since must not be sent what came
            # before its join (it backfills that, redacted as history visibility says).
            positions = {e.event_id: _stream_ordering(e) for e in events}
            joined_at = await self.sender_store.get_joined_servers_at(room_id, positions.values())
            per_destination: dict[str, list[Event]] = {}
            for event in events:
                destinations = set(joined_at.get(positions[event.event_id], ()))
                # A kicked or banned user's server is told too, though it has left.
                if event.type == "m.room.member" and event.state_key:
                    destinations.add(_server_of(event.state_key))
                destinations.discard(self.server_name)
                destinations.discard("")
                for destination in destinations:
                    per_destination.setdefault(destination, []).append(event)
            if not per_destination:
                return
            await self.sender_store.record_queued(
                room_id,
                {
                    destination: max(positions[e.event_id] for e in queued)
                    for destination, queued in per_destination.items()
                },
            )
            for destination, queued in per_destination.items():
                queue = self._queues.setdefault(destination, _Queue())
                if not queue.catching_up:
                    queue.pdus.extend(queued)
                    if len(queue.pdus) > MAX_QUEUED_PDUS:
                        queue.pdus.clear()
                        queue.catching_up = True
                self._kick(destination)
        except Exception:
            logger.exception("could not queue events of %s for federation", room_id)

    async def _room_has_other_servers(self, room_id: str) -> bool:
        """Whether another server's user has a member event in the room's current state
        (any membership, so one that has left counts too). Without one, no other server
        was ever in the room and nothing need be asked of the database: most rooms of
        most servers, on every message."""
        head = await self.store.get_room_head(room_id)
        if head is None:
            return True
        cached = self._room_servers_cache.get(room_id)
        if cached is not None and cached[0] == head.state_group and head.state_group is not None:
            return cached[1]
        others = any(
            event_type == "m.room.member" and _server_of(state_key) != self.server_name
            for event_type, state_key in head.state
        )
        self._room_servers_cache[room_id] = (head.state_group, others)
        return others

    def forward_room_events(self, room_id: str, events: list[Event]) -> None:
        """Queue other servers' events that we took into the room on their behalf
        (send_join, send_leave, send_knock): the spec has the resident server pass them
        on to the rest of the room."""
        if events and not self._stopped:
            defer.ensureDeferred(self._queue_room_events(room_id, events))

    def wake_destination(self, destination: str) -> None:
        """``destination`` just reached us, so it is up again: retry it now rather than
        at the end of its backoff (as Synapse does)."""
        queue = self._queues.get(destination)
        if queue is None or queue.retry_at <= self.reactor.seconds():
            return
        queue.retry_at = 0.0
        queue.retry_interval_ms = 0
        if queue.wakeup is not None and queue.wakeup.active():
            queue.wakeup.cancel()
        self._kick(destination)

    async def send_edu_durably(self, destination: str, edu_type: str, content: JsonDict) -> None:
        """Queue an EDU that must survive a restart (to-device messages): it is written to
        the outbox first and deleted only once a transaction carrying it succeeded."""
        if destination == self.server_name or self._stopped:
            return
        outbox_id = next(self._outbox_ids)
        await self.sender_store.add_to_outbox(outbox_id, destination, edu_type, content)
        queue = self._queues.setdefault(destination, _Queue())
        queue.edus.append({"edu_type": edu_type, "content": content, _OUTBOX_ID: outbox_id})
        self._kick(destination)

    def send_edu(self, destination: str, edu_type: str, content: JsonDict) -> None:
        if destination == self.server_name or self._stopped:
            return
        queue = self._queues.setdefault(destination, _Queue())
        queue.edus.append({"edu_type": edu_type, "content": content})
        self._kick(destination)

    async def start(self) -> None:
        """Resume destinations that were behind when we last stopped, and queue the
        durable EDUs not delivered before then."""
        for outbox_id, destination, edu_type, content in await self.sender_store.get_outbox():
            queue = self._queues.setdefault(destination, _Queue())
            queue.edus.append({"edu_type": edu_type, "content": content, _OUTBOX_ID: outbox_id})
            self._kick(destination)
        for (
            destination,
            retry_last_ts,
            interval,
        ) in await self.sender_store.get_destinations_behind():
            queue = self._queues.setdefault(destination, _Queue())
            queue.catching_up = True
            queue.retry_interval_ms = interval
            queue.retry_at = retry_last_ts / 1000.0 + interval / 1000.0
            self._kick(destination)

    def stop(self) -> None:
        self._stopped = True
        for queue in self._queues.values():
            if queue.wakeup is not None and queue.wakeup.active():
                queue.wakeup.cancel()

    # --- sending ----------------------------------------------------------------------

    def _kick(self, destination: str) -> None:
        queue = self._queues[destination]
        if queue.sending or self._stopped:
            return
        delay = queue.retry_at - self.reactor.seconds()
        if delay > 0:
            if queue.wakeup is None or not queue.wakeup.active():
                queue.wakeup = self.reactor.callLater(delay, self._kick, destination)
            return
        queue.sending = True
        defer.ensureDeferred(self._transmit(destination, queue))

    async def _transmit(self, destination: str, queue: _Queue) -> None:
        try:
            while not self._stopped:
                if queue.catching_up:
                    event_ids = await self.sender_store.get_catch_up_events(destination)
                    events = list((await self.store.get_events(event_ids)).values())
                    queue.pdus = events + [e for e in queue.pdus if e.event_id not in event_ids]
                    queue.catching_up = False
                pdus = queue.pdus[:MAX_PDUS_PER_TRANSACTION]
                edus = queue.edus[:MAX_EDUS_PER_TRANSACTION]
                if not pdus and not edus:
                    return
                if not await self._send_transaction(destination, pdus, edus):
                    # Keep the EDUs; the PDUs are recorded and come back by catch-up.
                    queue.pdus.clear()
                    queue.catching_up = True
                    queue.retry_interval_ms = min(
                        max(queue.retry_interval_ms * 2, self.min_retry_ms), self.max_retry_ms
                    )
                    now = self.reactor.seconds()
                    queue.retry_at = now + queue.retry_interval_ms / 1000.0
                    await self.sender_store.record_failure(
                        destination, int(now * 1000), queue.retry_interval_ms
                    )
                    return
                del queue.pdus[: len(pdus)]
                del queue.edus[: len(edus)]
                await self.sender_store.remove_from_outbox(
                    [e[_OUTBOX_ID] for e in edus if _OUTBOX_ID in e]
                )
                queue.retry_interval_ms = 0
                queue.retry_at = 0.0
                if pdus:
                    newest = max(_stream_ordering(e) for e in pdus)
                    await self.sender_store.record_success(destination, newest)
        except Exception:
            logger.exception("federation sender for %s failed", destination)
        finally:
            queue.sending = False
            if (queue.pdus or queue.edus or queue.catching_up) and not self._stopped:
                self._kick(destination)

    async def _send_transaction(
        self, destination: str, pdus: Iterable[Event], edus: list[JsonDict]
    ) -> bool:
        now_ms = int(self.reactor.seconds() * 1000)
        txn_id = f"{now_ms}_{next(self._txn_ids)}"
        body = {
            "origin": self.server_name,
            "origin_server_ts": now_ms,
            "pdus": [serialize_for_federation(e, now_ms) for e in pdus],
            "edus": [{k: v for k, v in edu.items() if k != _OUTBOX_ID} for edu in edus],
        }
        try:
            response = await self.transport.put_json(
                destination, f"/_matrix/federation/v1/send/{txn_id}", data=body
            )
        except Exception as e:
            logger.info("transaction %s to %s failed: %s", txn_id, destination, e)
            return False
        failures = response.get("pdus", {}) if isinstance(response, dict) else {}
        for event_id, result in failures.items() if isinstance(failures, dict) else ():
            if isinstance(result, dict) and "error" in result:
                logger.info("%s refused %s: %s", destination, event_id, result["error"])
        return True


def _stream_ordering(event: Event) -> int:
    return int(event.internal_metadata.get("stream_ordering", 0))


def _server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""
