"""The event (PDU) model shared by the protocol core, storage and handlers.

An ``Event`` wraps the federation-format dict of a PDU, exactly as it is signed, and
gives typed access to its fields whatever the room version's event format is. It
does no I/O. The event ID is passed in: for v1/v2 it is the ``event_id`` key of the
PDU, from v3 on it is derived from the reference hash (see ``events.hashing``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from homeserver.room_versions import EventFormat, RoomVersion

StateKey = tuple[str, str]
"""A (type, state_key) pair naming a piece of room state."""

JsonDict = dict[str, Any]


class Event:
    """A PDU of a known room version. Treat it as immutable."""

    __slots__ = ("_pdu", "event_id", "internal_metadata", "rejected_reason", "room_version")

    def __init__(self, pdu: JsonDict, room_version: RoomVersion, event_id: str) -> None:
        self._pdu = pdu
        self.room_version = room_version
        self.event_id = event_id
        # Per-server facts that are not part of the signed event (outlier, soft-failed,
        # stream ordering, txn id...). Never sent over federation.
        self.internal_metadata: JsonDict = {}
        self.rejected_reason: str | None = None

    # --- the signed PDU ---------------------------------------------------------------

    @property
    def pdu(self) -> JsonDict:
        """The federation format of the event (including ``unsigned`` if any)."""
        return self._pdu

    def get(self, key: str, default: Any = None) -> Any:
        return self._pdu.get(key, default)

    @property
    def type(self) -> str:
        return str(self._pdu["type"])

    @property
    def sender(self) -> str:
        return str(self._pdu["sender"])

    @property
    def room_id(self) -> str:
        room_id = self._pdu.get("room_id")
        if room_id is None and self.room_version.room_id_is_create_event_hash:
            # v12 create events carry no room_id: it is derived from their own ID.
            if self.type == "m.room.create" and self._pdu.get("state_key") == "":
                return "!" + self.event_id[1:]
        return str(room_id)

    @property
    def content(self) -> JsonDict:
        content = self._pdu.get("content")
        return content if isinstance(content, dict) else {}

    @property
    def state_key(self) -> str | None:
        state_key = self._pdu.get("state_key")
        return state_key if isinstance(state_key, str) else None

    def is_state(self) -> bool:
        return self.state_key is not None

    @property
    def state_pair(self) -> StateKey:
        """The (type, state_key) of a state event. Only valid when ``is_state()``."""
        assert self.state_key is not None, "not a state event"
        return (self.type, self.state_key)

    @property
    def depth(self) -> int:
        return int(self._pdu.get("depth", 0))

    @property
    def origin_server_ts(self) -> int:
        return int(self._pdu.get("origin_server_ts", 0))

    @property
    def hashes(self) -> Mapping[str, str]:
        hashes = self._pdu.get("hashes")
        return hashes if isinstance(hashes, dict) else {}

    @property
    def signatures(self) -> Mapping[str, Mapping[str, str]]:
        signatures = self._pdu.get("signatures")
        return signatures if isinstance(signatures, dict) else {}

    @property
    def unsigned(self) -> JsonDict:
        unsigned = self._pdu.get("unsigned")
        return unsigned if isinstance(unsigned, dict) else {}

    @property
    def membership(self) -> str | None:
        if self.type != "m.room.member":
            return None
        membership = self.content.get("membership")
        return membership if isinstance(membership, str) else None

    @property
    def redacts(self) -> str | None:
        if self.type != "m.room.redaction":
            return None
        if self.room_version.redacts_in_content:
            redacts = self.content.get("redacts")
        else:
            redacts = self._pdu.get("redacts")
        return redacts if isinstance(redacts, str) else None

    @property
    def prev_event_ids(self) -> Sequence[str]:
        return _reference_ids(self._pdu.get("prev_events"), self.room_version)

    @property
    def auth_event_ids(self) -> Sequence[str]:
        return _reference_ids(self._pdu.get("auth_events"), self.room_version)

    def __repr__(self) -> str:
        return (
            f"<Event {self.event_id} type={self.type!r} state_key={self.state_key!r} "
            f"v{self.room_version.identifier}>"
        )


def _reference_ids(value: Any, room_version: RoomVersion) -> Sequence[str]:
    if not isinstance(value, list):
        return ()
    if room_version.event_format is EventFormat.V1:
        # v1/v2: [[event_id, {"sha256": ...}], ...]
        return tuple(str(item[0]) for item in value if isinstance(item, list) and item)
    return tuple(str(item) for item in value)
