"""Content hashes, reference hashes, event IDs and v12 room IDs.

Spec: server-server-api "Calculating the content hash / reference hash for an event",
rooms/vN.md "Event IDs", appendices "Room IDs".
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from unpaddedbase64 import decode_base64, encode_base64

from homeserver.events.canonical_json import encode_canonical_json
from homeserver.events.errors import EventValidationError
from homeserver.events.model import Event, JsonDict
from homeserver.events.redaction import prune_event_dict
from homeserver.room_versions import EventIdFormat, RoomVersion

_CONTENT_HASH_EXCLUDED = frozenset({"unsigned", "signatures", "hashes"})
# `age_ts` is a pre-`unsigned` top-level key; redaction drops it already, but the spec
# names it, so it is excluded explicitly in case a rules variant ever keeps it.
_REFERENCE_HASH_EXCLUDED = frozenset({"signatures", "unsigned", "age_ts"})


def compute_content_hash(pdu: Mapping[str, Any]) -> bytes:
    """SHA-256 over the canonical JSON of ``pdu`` without unsigned, signatures, hashes."""
    hashed = {key: value for key, value in pdu.items() if key not in _CONTENT_HASH_EXCLUDED}
    return hashlib.sha256(encode_canonical_json(hashed)).digest()


def add_content_hash(pdu: JsonDict) -> None:
    """Set ``pdu["hashes"]["sha256"]`` to the content hash, in place.

    Other algorithms already in ``hashes`` are kept: they are not covered by the hash.
    """
    digest = encode_base64(compute_content_hash(pdu))
    hashes = pdu.get("hashes")
    if isinstance(hashes, dict):
        hashes["sha256"] = digest
    else:
        pdu["hashes"] = {"sha256": digest}


def check_content_hash(pdu: Mapping[str, Any]) -> bool:
    """Whether ``pdu["hashes"]["sha256"]`` matches the PDU's content.

    False (not an exception) on a missing or undecodable hash: the spec's answer to a
    bad hash is to redact the event, not to drop it.
    """
    hashes = pdu.get("hashes")
    if not isinstance(hashes, dict):
        return False
    expected = hashes.get("sha256")
    if not isinstance(expected, str):
        return False
    try:
        expected_bytes = decode_base64(expected)
    except Exception:
        return False
    return expected_bytes == compute_content_hash(pdu)


def compute_reference_hash(pdu: Mapping[str, Any], room_version: RoomVersion) -> bytes:
    """SHA-256 over the canonical JSON of the redacted PDU without signatures/unsigned."""
    pruned = prune_event_dict(pdu, room_version)
    for key in _REFERENCE_HASH_EXCLUDED:
        pruned.pop(key, None)
    if room_version.room_id_is_create_event_hash and pruned.get("type") == "m.room.create":
        # v12: "room_id ... Omitted from m.room.create events". One that carries it anyway
        # (it is rejected by the auth rules) is hashed without it, as Synapse does, so
        # every server names it with the same ID.
        pruned.pop("room_id", None)
    return hashlib.sha256(encode_canonical_json(pruned)).digest()


def compute_event_id(pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    """The ID of the event ``pdu`` in ``room_version``.

    v1/v2: the sender chose it and put it in the PDU. v3: ``$`` + unpadded base64 of the
    reference hash; v4+: the same in the URL-safe alphabet.
    """
    id_format = room_version.event_id_format
    if id_format is EventIdFormat.OPAQUE:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str) or not event_id.startswith("$"):
            raise EventValidationError(
                f"room version {room_version.identifier} events must carry an event_id "
                "string starting with '$'"
            )
        return event_id
    digest = compute_reference_hash(pdu, room_version)
    urlsafe = id_format is EventIdFormat.URLSAFE_BASE64
    return "$" + encode_base64(digest, urlsafe=urlsafe)


def make_event(pdu: JsonDict, room_version: RoomVersion) -> Event:
    """Wrap ``pdu`` as an ``Event``, computing (v3+) or taking (v1/v2) its ID.

    ``pdu`` is not copied: the caller hands it over and must not mutate it afterwards.
    """
    if not room_version.uses_opaque_event_ids and "event_id" in pdu:
        # The ID is the hash of the event; an event_id key inside it would be hashed too
        # and could only ever disagree with the real ID.
        raise EventValidationError(
            f"room version {room_version.identifier} events must not carry an event_id"
        )
    return Event(pdu, room_version, compute_event_id(pdu, room_version))


def room_id_from_create_event(create_pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    """The room ID that the ``m.room.create`` event ``create_pdu`` creates.

    From v12 it is ``!`` + the URL-safe reference hash of the create event; before, it
    is the ``room_id`` the create event names.
    """
    if create_pdu.get("type") != "m.room.create" or create_pdu.get("state_key") != "":
        raise EventValidationError("not an m.room.create event with an empty state_key")
    if room_version.room_id_is_create_event_hash:
        digest = compute_reference_hash(create_pdu, room_version)
        return "!" + encode_base64(digest, urlsafe=True)
    room_id = create_pdu.get("room_id")
    if not isinstance(room_id, str):
        raise EventValidationError("m.room.create event has no room_id")
    return room_id


def event_reference(event: Event) -> list[Any]:
    """The ``[event_id, {"sha256": hash}]`` pair that v1/v2 PDUs use in prev/auth events."""
    digest = compute_reference_hash(event.pdu, event.room_version)
    return [event.event_id, {"sha256": encode_base64(digest)}]
