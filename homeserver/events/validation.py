"""Format checks on a PDU: required keys per event format, size limits, ID grammar.

Spec: client-server-api "Size limits", rooms/vN.md "Event format", appendices
"Identifier Grammar". These are the "is a valid event" checks a received PDU passes
before its signatures; failing them means the event is dropped (or refused with
``M_BAD_JSON`` / ``M_TOO_LARGE`` when a local client sent it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from homeserver.events.canonical_json import encode_canonical_json, validate_canonical_json
from homeserver.events.errors import EventSizeError, EventValidationError
from homeserver.events.model import Event
from homeserver.room_versions import EventFormat, EventIdFormat, RoomVersion

MAX_PDU_SIZE = 65536
MAX_ID_BYTES = 255
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10
# v1-v5 PDUs document a 2**63 - 1 depth cap; canonical JSON limits v6+ to 2**53 - 1.
_MAX_DEPTH_LENIENT = 2**63 - 1
_MAX_DEPTH_STRICT = 2**53 - 1

_SERVER_NAME = r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[0-9A-Za-z.\-]{1,255})(?::[0-9]{1,5})?"
_SERVER_NAME_RE = re.compile(_SERVER_NAME)
# Historical user IDs: any localpart without ':' or NUL, even empty (appendices,
# "Historical User IDs"); servers must still accept these over federation.
_USER_ID_RE = re.compile(r"@[^:\x00]*:" + _SERVER_NAME)
_STRICT_USER_ID_RE = re.compile(r"@[a-z0-9._=\-/+]+:" + _SERVER_NAME)
_DOMAIN_ROOM_ID_RE = re.compile(r"![^:\x00]+:" + _SERVER_NAME)
_HASH_ROOM_ID_RE = re.compile(r"![A-Za-z0-9\-_]{43}")
_OPAQUE_EVENT_ID_RE = re.compile(r"\$[^:\x00]+:" + _SERVER_NAME)
_BASE64_EVENT_ID_RE = re.compile(r"\$[A-Za-z0-9+/]{43}")
_URLSAFE_EVENT_ID_RE = re.compile(r"\$[A-Za-z0-9\-_]{43}")

_ROOM_VERSION_RE = re.compile(r"[a-z0-9.\-]{1,32}")

_EVENT_ID_RE = {
    EventIdFormat.OPAQUE: _OPAQUE_EVENT_ID_RE,
    EventIdFormat.BASE64: _BASE64_EVENT_ID_RE,
    EventIdFormat.URLSAFE_BASE64: _URLSAFE_EVENT_ID_RE,
}


# --- identifier grammar ------------------------------------------------------------------


def is_valid_server_name(server_name: str) -> bool:
    return _SERVER_NAME_RE.fullmatch(server_name) is not None


def is_valid_room_version_identifier(identifier: str) -> bool:
    """Grammar of a room version string (rooms/index.md); says nothing about support."""
    return _ROOM_VERSION_RE.fullmatch(identifier) is not None


def is_valid_user_id(user_id: str, *, historical: bool = True) -> bool:
    """Grammar of a user ID; ``historical=False`` demands the v1.8+ localpart charset."""
    if len(user_id.encode("utf-8")) > MAX_ID_BYTES:
        return False
    pattern = _USER_ID_RE if historical else _STRICT_USER_ID_RE
    return pattern.fullmatch(user_id) is not None


def is_valid_room_id(room_id: str, room_version: RoomVersion) -> bool:
    if len(room_id.encode("utf-8")) > MAX_ID_BYTES:
        return False
    if room_version.room_id_is_create_event_hash:
        return _HASH_ROOM_ID_RE.fullmatch(room_id) is not None
    return _DOMAIN_ROOM_ID_RE.fullmatch(room_id) is not None


def is_valid_event_id(event_id: str, room_version: RoomVersion) -> bool:
    if len(event_id.encode("utf-8")) > MAX_ID_BYTES:
        return False
    return _EVENT_ID_RE[room_version.event_id_format].fullmatch(event_id) is not None


# --- size limits -------------------------------------------------------------------------


def check_size_limits(
    pdu: Mapping[str, Any], room_version: RoomVersion, event_id: str | None = None
) -> None:
    """Raise ``EventSizeError`` if the PDU or a size-limited key is too large.

    ``event_id`` defaults to the PDU's own (v1/v2); v3+ IDs are fixed-size hashes.
    """
    if len(encode_canonical_json(pdu)) > MAX_PDU_SIZE:
        raise EventSizeError(f"event is larger than {MAX_PDU_SIZE} bytes of canonical JSON")
    if event_id is None:
        event_id = pdu.get("event_id")
    fields = (
        ("sender", pdu.get("sender")),
        ("room_id", pdu.get("room_id")),
        ("state_key", pdu.get("state_key")),
        ("type", pdu.get("type")),
        ("event_id", event_id),
    )
    # Codepoint limits first: every server always enforced them, so breaking one is
    # never acceptable; the byte limits were enforced late (see RoomVersion).
    for name, value in fields:
        if isinstance(value, str) and len(value) > MAX_ID_BYTES:
            raise EventSizeError(f"'{name}' is longer than {MAX_ID_BYTES} characters")
    for name, value in fields:
        if isinstance(value, str) and len(value.encode("utf-8")) > MAX_ID_BYTES:
            raise EventSizeError(
                f"'{name}' is longer than {MAX_ID_BYTES} bytes",
                persist_as_rejected=not room_version.strict_event_byte_limits,
            )


# --- event format ------------------------------------------------------------------------


def _fail(message: str) -> EventValidationError:
    return EventValidationError(message)


def _require_str(pdu: Mapping[str, Any], key: str) -> str:
    value = pdu.get(key)
    if type(value) is not str:
        raise _fail(f"'{key}' must be a string" if key in pdu else f"'{key}' is missing")
    return value


def _require_int(pdu: Mapping[str, Any], key: str) -> int:
    value = pdu.get(key)
    if type(value) is not int:
        raise _fail(f"'{key}' must be an integer" if key in pdu else f"'{key}' is missing")
    return value


def _check_references(value: Any, key: str, room_version: RoomVersion, limit: int) -> list[str]:
    if type(value) is not list:
        raise _fail(f"'{key}' must be a list")
    if len(value) > limit:
        raise _fail(f"'{key}' lists {len(value)} events; at most {limit} are allowed")
    event_id_re = _EVENT_ID_RE[room_version.event_id_format]
    ids: list[str] = []
    for item in value:
        if room_version.event_format is EventFormat.V1:
            # v1/v2: [event_id, {"sha256": reference hash}]
            if (
                type(item) is not list
                or len(item) != 2
                or type(item[0]) is not str
                or type(item[1]) is not dict
            ):
                raise _fail(f"'{key}' entries must be [event_id, hashes] pairs")
            event_id = item[0]
        else:
            if type(item) is not str:
                raise _fail(f"'{key}' entries must be event ID strings")
            event_id = item
        if event_id_re.fullmatch(event_id) is None:
            raise _fail(f"'{key}' holds a malformed event ID {event_id!r}")
        ids.append(event_id)
    return ids


def validate_pdu(pdu: Mapping[str, Any], room_version: RoomVersion) -> None:
    """Raise ``EventValidationError`` unless ``pdu`` has the format of ``room_version``.

    Covers the size limits, the required keys and their types, the grammar of the IDs
    in it, reference list lengths and (v6+) strict canonical JSON.
    """
    if not isinstance(pdu, Mapping):
        raise _fail("an event must be a JSON object")
    check_size_limits(pdu, room_version)

    event_type = _require_str(pdu, "type")
    sender = _require_str(pdu, "sender")
    if not is_valid_user_id(sender):
        raise _fail(f"'sender' {sender!r} is not a valid user ID")
    _require_int(pdu, "origin_server_ts")
    depth = _require_int(pdu, "depth")
    max_depth = _MAX_DEPTH_STRICT if room_version.strict_canonical_json else _MAX_DEPTH_LENIENT
    if not 0 <= depth <= max_depth:
        raise _fail(f"'depth' must be between 0 and {max_depth}")
    if type(pdu.get("content")) is not dict:
        raise _fail("'content' must be an object" if "content" in pdu else "'content' is missing")

    state_key = pdu.get("state_key")
    if "state_key" in pdu and type(state_key) is not str:
        raise _fail("'state_key' must be a string")
    if "unsigned" in pdu and type(pdu["unsigned"]) is not dict:
        raise _fail("'unsigned' must be an object")

    hashes = pdu.get("hashes")
    if type(hashes) is not dict or type(hashes.get("sha256")) is not str:
        raise _fail("'hashes' must be an object with a 'sha256' string")
    signatures = pdu.get("signatures")
    if type(signatures) is not dict or not all(
        type(server) is str and type(sigs) is dict for server, sigs in signatures.items()
    ):
        raise _fail("'signatures' must be an object of objects")

    if room_version.event_format is EventFormat.V1:
        event_id = _require_str(pdu, "event_id")
        if not is_valid_event_id(event_id, room_version):
            raise _fail(f"'event_id' {event_id!r} is not a valid event ID")
    elif "event_id" in pdu:
        raise _fail(f"room version {room_version.identifier} events must not carry an event_id")

    _check_references(pdu.get("prev_events"), "prev_events", room_version, MAX_PREV_EVENTS)
    auth_event_ids = _check_references(
        pdu.get("auth_events"), "auth_events", room_version, MAX_AUTH_EVENTS
    )

    is_create = event_type == "m.room.create" and state_key == ""
    if room_version.room_id_is_create_event_hash and is_create:
        if "room_id" in pdu:
            raise _fail("an m.room.create event must not carry a room_id in this room version")
    else:
        room_id = _require_str(pdu, "room_id")
        if not is_valid_room_id(room_id, room_version):
            raise _fail(f"'room_id' {room_id!r} is not a valid room ID for this room version")
        if room_version.room_id_is_create_event_hash and "$" + room_id[1:] in auth_event_ids:
            raise _fail("the m.room.create event must not be listed in auth_events")

    if event_type == "m.room.redaction" and not room_version.redacts_in_content:
        redacts = pdu.get("redacts")
        if "redacts" in pdu and type(redacts) is not str:
            raise _fail("'redacts' must be an event ID string")

    validate_canonical_json(pdu, room_version)


def validate_event(event: Event) -> None:
    """``validate_pdu`` for a wrapped event, also bounding its (computed) event ID."""
    validate_pdu(event.pdu, event.room_version)
    if len(event.event_id.encode("utf-8")) > MAX_ID_BYTES:
        raise EventSizeError(f"'event_id' is longer than {MAX_ID_BYTES} bytes")
