"""The two wire formats of an event: the Client-Server "ClientEvent" and the PDU.

Spec: client-server-api "Room Event Format"; rooms/v11.md on `redacts`; the PDU formats
in rooms/vN.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.events.model import Event, JsonDict

# Server-local unsigned keys that must not leave this server over federation.
_LOCAL_UNSIGNED_KEYS = frozenset({"age_ts", "redacted_because", "transaction_id", "membership"})


def _age(event: Event, unsigned: Mapping[str, Any], now_ms: int) -> int:
    # ``age_ts`` is when the event was created (local) or received minus its reported
    # age (remote); it beats origin_server_ts, which a remote clock may skew.
    age_ts = unsigned.get("age_ts")
    if type(age_ts) is not int:
        age_ts = event.origin_server_ts
    return now_ms - age_ts


def serialize_for_client(
    event: Event,
    now_ms: int,
    *,
    include_room_id: bool = True,
    extra_unsigned: Mapping[str, Any] | None = None,
) -> JsonDict:
    """The ClientEvent form of ``event``.

    ``include_room_id`` is False for /sync's per-room timelines
    (ClientEventWithoutRoomID). ``extra_unsigned`` carries per-request data the caller
    knows (``transaction_id`` for the sender's device, ``redacted_because``,
    ``prev_content``, the requester's ``membership``...). The result shares nested
    values (``content``...) with the event, so it is for encoding, not for mutating.
    """
    pdu = event.pdu
    content = event.content
    result: JsonDict = {
        "event_id": event.event_id,
        "type": event.type,
        "sender": event.sender,
        "content": content,
        "origin_server_ts": event.origin_server_ts,
    }
    if include_room_id:
        result["room_id"] = event.room_id
    state_key = pdu.get("state_key")
    if isinstance(state_key, str):
        result["state_key"] = state_key

    stored_unsigned = event.unsigned
    unsigned: JsonDict = {key: value for key, value in stored_unsigned.items() if key != "age_ts"}
    if extra_unsigned:
        unsigned.update(extra_unsigned)
    unsigned["age"] = _age(event, stored_unsigned, now_ms)
    result["unsigned"] = unsigned

    if event.type == "m.room.redaction":
        redacts = event.redacts
        if redacts is not None:
            # v11 moved `redacts` into content; clients of either era look in both places.
            result["redacts"] = redacts
            if "redacts" not in content:
                result["content"] = {**content, "redacts": redacts}
    return result


def serialize_for_federation(event: Event, now_ms: int | None = None) -> JsonDict:
    """The PDU as sent to other servers.

    v3+ PDUs carry no ``event_id`` (receivers compute it). With ``now_ms``, ``unsigned.age``
    is refreshed; server-local unsigned keys are never sent.
    """
    pdu = event.pdu
    result: JsonDict = dict(pdu)
    if not event.room_version.uses_opaque_event_ids:
        result.pop("event_id", None)
    elif "event_id" not in result:
        result["event_id"] = event.event_id

    stored_unsigned = pdu.get("unsigned")
    if isinstance(stored_unsigned, dict):
        unsigned = {
            key: value for key, value in stored_unsigned.items() if key not in _LOCAL_UNSIGNED_KEYS
        }
        if now_ms is not None:
            unsigned["age"] = _age(event, stored_unsigned, now_ms)
        if unsigned:
            result["unsigned"] = unsigned
        else:
            result.pop("unsigned", None)
    elif now_ms is not None:
        result["unsigned"] = {"age": _age(event, {}, now_ms)}
    return result


# What a remote server may put in ``unsigned``: the rest is ours to compute, and trusting
# it would let a sender forge e.g. ``redacted_because`` or ``prev_content``.
_RECEIVED_UNSIGNED_KEYS = {"m.room.member": frozenset({"invite_room_state", "knock_room_state"})}


def accept_received_unsigned(pdu: JsonDict, received_ms: int) -> None:
    """Clean up a PDU received over federation, in place, before wrapping it.

    Keeps only the ``unsigned`` keys a remote server may set and turns its relative
    ``age`` into our ``age_ts`` (the sender's clock is not trusted for it).
    """
    if "unsigned" not in pdu:
        return
    received = pdu["unsigned"]
    unsigned: JsonDict = {}
    if isinstance(received, dict):
        allowed = _RECEIVED_UNSIGNED_KEYS.get(pdu.get("type"), frozenset())  # type: ignore[arg-type]
        unsigned = {key: value for key, value in received.items() if key in allowed}
        age = received.get("age")
        if type(age) is int:
            unsigned["age_ts"] = received_ms - age
    pdu["unsigned"] = unsigned
