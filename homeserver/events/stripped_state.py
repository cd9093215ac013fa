"""The state shown with an invite or a knock, before the user is in the room.

Which state events make the preview is Synapse's ``room_prejoin_state`` default, so
clients see the same preview whichever server holds the invite.
"""

from __future__ import annotations

from collections.abc import Mapping

from homeserver.events.model import Event, JsonDict, StateKey

STRIPPED_STATE_TYPES = frozenset(
    {
        "m.room.create",
        "m.room.join_rules",
        "m.room.canonical_alias",
        "m.room.avatar",
        "m.room.encryption",
        "m.room.name",
        "m.room.topic",
    }
)


def stripped_state_ids(state: Mapping[StateKey, str]) -> list[str]:
    """The IDs of the events of ``state`` that make a room's preview."""
    return [event_id for key, event_id in state.items() if key[0] in STRIPPED_STATE_TYPES]


def strip_event(event: Event) -> JsonDict:
    """A state event in the spec's stripped form."""
    return {
        "type": event.type,
        "state_key": event.state_key,
        "content": event.content,
        "sender": event.sender,
    }
