"""Events as clients receive them: every endpoint that returns events goes through here.

``EventSerializer.serialize_events`` turns persisted events into ClientEvents in a few
queries for the whole batch:

- a redacted event is sent pruned, with ``unsigned.redacted_because`` (the redaction);
- a state event carries ``unsigned.prev_content`` / ``prev_sender`` (what it replaced);
- the requester's own events carry ``unsigned.transaction_id`` for the device that sent
  them (spec: transaction IDs are scoped to the device);
- events with related events carry their bundled aggregations, ``unsigned.m.relations``,
  from the aggregation provider (the relations handler) when one is set.

Which redactions apply follows the spec's "Handling redactions": in room versions 1 and
2 the auth rules already checked them; later, a redaction applies if its sender is on
the same server as the redacted event's sender, or had the power to redact others
when it was sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from homeserver.auth.power_levels import get_named_level, get_user_power_level
from homeserver.events.formats import serialize_for_client
from homeserver.events.model import Event, JsonDict
from homeserver.events.redaction import prune_event
from homeserver.types import Requester
from storage.events import EventStore
from storage.room_history import RoomHistoryStore

_POWER_KEYS = [("m.room.create", ""), ("m.room.power_levels", "")]


class AggregationProvider(Protocol):
    async def bundle_aggregations(
        self,
        events: Sequence[Event],
        user_id: str,
        *,
        requester: Requester | None = None,
        include_room_id: bool = True,
    ) -> dict[str, JsonDict]: ...


def _domain(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


class EventSerializer:
    def __init__(
        self, store: EventStore, history: RoomHistoryStore, now_ms: Callable[[], int]
    ) -> None:
        self.store = store
        self.history = history
        self.now_ms = now_ms
        self.aggregations: AggregationProvider | None = None

    def set_aggregation_provider(self, provider: AggregationProvider) -> None:
        # Set after construction: the provider serializes nested events through us.
        self.aggregations = provider

    async def serialize_event(
        self, event: Event, *, requester: Requester | None = None, include_room_id: bool = True
    ) -> JsonDict:
        serialized = await self.serialize_events(
            [event], requester=requester, include_room_id=include_room_id
        )
        return serialized[0]

    async def serialize_events(
        self,
        events: Sequence[Event],
        *,
        requester: Requester | None = None,
        include_room_id: bool = True,
        aggregations: Mapping[str, JsonDict] | None = None,
    ) -> list[JsonDict]:
        """The ClientEvent form of each of ``events``, in order.

        Visibility is the caller's job (``visibility.filter_events_for_user``).
        ``aggregations``: the ``m.relations`` of each event, already worked out (the
        provider passes them for the nested events it serializes); None asks the
        provider, for the requester.
        """
        if not events:
            return []
        if aggregations is None:
            aggregations = {}
            if self.aggregations is not None and requester is not None:
                aggregations = await self.aggregations.bundle_aggregations(
                    events,
                    requester.user_id,
                    requester=requester,
                    include_room_id=include_room_id,
                )
        now = self.now_ms()
        redacted_by = await self._applicable_redactions(events)
        replaced_ids = {
            e.unsigned["replaces_state"]
            for e in events
            if e.is_state() and isinstance(e.unsigned.get("replaces_state"), str)
        }
        needed = replaced_ids | set(redacted_by.values())
        related = await self.store.get_events(needed) if needed else {}
        txn_ids: dict[str, str] = {}
        if requester is not None and requester.device_id is not None:
            own = [e.event_id for e in events if e.sender == requester.user_id]
            txn_ids = await self.history.get_transaction_ids(
                requester.user_id, requester.device_id, own
            )

        result = []
        for event in events:
            extra: JsonDict = {}
            shown = event
            redaction = related.get(redacted_by.get(event.event_id, ""))
            if redaction is not None:
                shown = prune_event(event)
                extra["redacted_because"] = serialize_for_client(
                    redaction, now, include_room_id=include_room_id
                )
            replaced = event.unsigned.get("replaces_state")
            previous = related.get(replaced) if isinstance(replaced, str) else None
            if previous is not None:
                extra["prev_content"] = previous.content
                extra["prev_sender"] = previous.sender
            txn_id = txn_ids.get(event.event_id)
            if txn_id is not None:
                extra["transaction_id"] = txn_id
            relations = aggregations.get(event.event_id)
            if relations:
                extra["m.relations"] = relations
            result.append(
                serialize_for_client(
                    shown, now, include_room_id=include_room_id, extra_unsigned=extra
                )
            )
        return result

    async def applicable_redactions(self, events: Sequence[Event]) -> dict[str, str]:
        """For each redacted event among ``events``, the ID of a redaction that applies
        (federation serves those events pruned)."""
        return await self._applicable_redactions(events)

    async def _applicable_redactions(self, events: Sequence[Event]) -> dict[str, str]:
        """For each redacted event among ``events``, the ID of a redaction that applies."""
        by_id = {e.event_id: e for e in events}
        found = await self.store.get_redacting_events(list(by_id))
        if not found:
            return {}
        redactions = await self.store.get_events(set(found.values()))
        applicable: dict[str, str] = {}
        needs_power: dict[str, Event] = {}
        for redacted_id, redaction_id in found.items():
            original = by_id[redacted_id]
            redaction = redactions.get(redaction_id)
            if (
                redaction is None
                or redaction.rejected_reason is not None
                or redaction.room_id != original.room_id
            ):
                continue
            if original.room_version.uses_opaque_event_ids or _domain(redaction.sender) == _domain(
                original.sender
            ):
                applicable[redacted_id] = redaction_id
            else:
                needs_power[redacted_id] = redaction
        if needs_power:
            groups = await self.history.get_state_groups({r.event_id for r in needs_power.values()})
            group_state = await self.history.get_state_for_groups(set(groups.values()), _POWER_KEYS)
            state_ids = {eid for state in group_state.values() for eid in state.values()}
            state_events = await self.store.get_events(state_ids)
            for redacted_id, redaction in needs_power.items():
                group = groups.get(redaction.event_id)
                state = group_state.get(group, {}) if group is not None else {}
                auth_events = {
                    key: state_events[eid] for key, eid in state.items() if eid in state_events
                }
                version = redaction.room_version
                if get_user_power_level(redaction.sender, auth_events, version) >= get_named_level(
                    "redact", auth_events, version
                ):
                    applicable[redacted_id] = redaction.event_id
        return applicable
