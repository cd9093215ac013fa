"""Events as a client sees them: redacted ones pruned and carrying the redaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from homeserver.events.formats import serialize_for_client
from homeserver.events.model import Event, JsonDict
from homeserver.events.redaction import prune_event
from homeserver.types import Requester
from storage.events import EventStore

SerializeEvents = Callable[[Sequence[Event], Requester | None], Awaitable[list[JsonDict]]]
"""Turns events into what ``requester`` receives (pruned redactions, unsigned extras)."""


def simple_serializer(store: EventStore, now_ms: Callable[[], int]) -> SerializeEvents:
    async def serialize(events: Sequence[Event], requester: Requester | None) -> list[JsonDict]:
        return await serialize_events(store, events, now_ms())

    return serialize


async def serialize_events(
    store: EventStore, events: Sequence[Event], now_ms: int
) -> list[JsonDict]:
    """ClientEvents for ``events``, in order; one query for all their redactions."""
    redacting = await store.get_redacting_events([event.event_id for event in events])
    redactions = await store.get_events(set(redacting.values())) if redacting else {}
    result = []
    for event in events:
        redaction = redactions.get(redacting.get(event.event_id, ""))
        if redaction is None:
            result.append(serialize_for_client(event, now_ms))
            continue
        result.append(
            serialize_for_client(
                prune_event(event),
                now_ms,
                extra_unsigned={"redacted_because": serialize_for_client(redaction, now_ms)},
            )
        )
    return result


async def serialize_event(store: EventStore, event: Event, now_ms: int) -> JsonDict:
    return (await serialize_events(store, [event], now_ms))[0]
