"""The redaction algorithm (spec: rooms/vN.md "Redactions").

Redaction is part of signing and hashing (the signature and the reference hash cover the
redacted form), so the kept keys must match the spec exactly for every rules variant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.events.model import Event, JsonDict
from homeserver.room_versions import RedactionRules, RoomVersion

_TOP_LEVEL_KEYS_V1 = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "prev_state",
        "auth_events",
        "origin",
        "origin_server_ts",
        "membership",
    }
)
# v11 stopped protecting the legacy keys that no algorithm reads any more.
_TOP_LEVEL_KEYS_V11 = _TOP_LEVEL_KEYS_V1 - {"origin", "membership", "prev_state"}

_POWER_LEVELS_KEYS_V1 = (
    "ban",
    "events",
    "events_default",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
)

# Per rules variant: event type -> content keys kept. m.room.create in v11 (keeps all
# content) and the v11 third_party_invite rule are handled in code.
_CONTENT_KEYS: dict[RedactionRules, dict[str, tuple[str, ...]]] = {
    RedactionRules.V1: {
        "m.room.member": ("membership",),
        "m.room.create": ("creator",),
        "m.room.join_rules": ("join_rule",),
        "m.room.power_levels": _POWER_LEVELS_KEYS_V1,
        "m.room.aliases": ("aliases",),
        "m.room.history_visibility": ("history_visibility",),
    },
    RedactionRules.V6: {
        "m.room.member": ("membership",),
        "m.room.create": ("creator",),
        "m.room.join_rules": ("join_rule",),
        "m.room.power_levels": _POWER_LEVELS_KEYS_V1,
        "m.room.history_visibility": ("history_visibility",),
    },
    RedactionRules.V8: {
        "m.room.member": ("membership",),
        "m.room.create": ("creator",),
        "m.room.join_rules": ("join_rule", "allow"),
        "m.room.power_levels": _POWER_LEVELS_KEYS_V1,
        "m.room.history_visibility": ("history_visibility",),
    },
    RedactionRules.V9: {
        "m.room.member": ("membership", "join_authorised_via_users_server"),
        "m.room.create": ("creator",),
        "m.room.join_rules": ("join_rule", "allow"),
        "m.room.power_levels": _POWER_LEVELS_KEYS_V1,
        "m.room.history_visibility": ("history_visibility",),
    },
    RedactionRules.V11: {
        "m.room.member": ("membership", "join_authorised_via_users_server"),
        "m.room.join_rules": ("join_rule", "allow"),
        "m.room.power_levels": (*_POWER_LEVELS_KEYS_V1, "invite"),
        "m.room.history_visibility": ("history_visibility",),
        "m.room.redaction": ("redacts",),
    },
}

# Server-added metadata that says nothing about the redacted content and that local
# code still needs on a redacted event (age, what it replaced, why it was redacted).
_UNSIGNED_KEYS_KEPT = ("age_ts", "replaces_state", "redacted_because")


def top_level_keys_kept(room_version: RoomVersion) -> frozenset[str]:
    """The top-level PDU keys that survive redaction in ``room_version``."""
    if room_version.redaction_rules is RedactionRules.V11:
        return _TOP_LEVEL_KEYS_V11
    return _TOP_LEVEL_KEYS_V1


def prune_event_dict(pdu: Mapping[str, Any], room_version: RoomVersion) -> JsonDict:
    """The redacted form of ``pdu``: a new dict, exactly as the spec's algorithm says.

    Nested values are shared with ``pdu``, not copied; both must be treated as immutable.
    ``unsigned`` is dropped, as the spec's key list requires.
    """
    rules = room_version.redaction_rules
    allowed = _TOP_LEVEL_KEYS_V11 if rules is RedactionRules.V11 else _TOP_LEVEL_KEYS_V1
    pruned: JsonDict = {key: value for key, value in pdu.items() if key in allowed}

    event_type = pdu.get("type")
    content = pdu.get("content")
    if not isinstance(content, dict):
        # Keep a malformed content as found rather than inventing one: the hash and
        # signature checks then fail on the real bytes.
        if "content" in pdu:
            pruned["content"] = content
        return pruned

    if rules is RedactionRules.V11 and event_type == "m.room.create":
        pruned["content"] = content
        return pruned

    new_content: JsonDict = {}
    kept = _CONTENT_KEYS[rules].get(event_type) if isinstance(event_type, str) else None
    if kept:
        for key in kept:
            if key in content:
                new_content[key] = content[key]
        if rules is RedactionRules.V11 and event_type == "m.room.member":
            # v11: "will only contain the signed key after redaction" -- so an object
            # without `signed` survives as {} (Synapse agrees; the event ID depends on it).
            third_party_invite = content.get("third_party_invite")
            if isinstance(third_party_invite, dict):
                new_content["third_party_invite"] = (
                    {"signed": third_party_invite["signed"]}
                    if "signed" in third_party_invite
                    else {}
                )
    pruned["content"] = new_content
    return pruned


def prune_event(event: Event) -> Event:
    """A redacted copy of ``event`` with the same ID, metadata and rejection state."""
    pruned = prune_event_dict(event.pdu, event.room_version)
    unsigned = event.unsigned
    if unsigned:
        kept_unsigned = {key: unsigned[key] for key in _UNSIGNED_KEYS_KEPT if key in unsigned}
        if kept_unsigned:
            pruned["unsigned"] = kept_unsigned
    redacted = Event(pruned, event.room_version, event.event_id)
    redacted.internal_metadata = dict(event.internal_metadata)
    redacted.internal_metadata["redacted"] = True
    redacted.rejected_reason = event.rejected_reason
    return redacted
