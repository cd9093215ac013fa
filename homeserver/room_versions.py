"""Room versions as data.

Every behaviour that differs between room versions is a field here, so code asks
``room_version.knock_join_rule`` and never compares version strings. The table is
taken from the room version pages of the spec (``rooms/v1.md`` ... ``rooms/v12.md``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


class EventFormat(enum.Enum):
    """The shape of a PDU on the wire."""

    V1 = 1  # v1, v2: event_id inside the event; prev/auth events are [id, hashes] pairs
    V3 = 3  # v3: no event_id; prev/auth events are lists of IDs
    V4 = 4  # v4-v11: as V3 (IDs are URL-safe); v11 drops some top-level keys
    V12 = 12  # v12: the create event has no room_id and is absent from auth_events


class EventIdFormat(enum.Enum):
    OPAQUE = "opaque"  # $localpart:server, chosen by the sender
    BASE64 = "base64"  # $ + standard unpadded base64 of the reference hash (v3)
    URLSAFE_BASE64 = "urlsafe_base64"  # $ + URL-safe unpadded base64 (v4+)


class StateResAlgorithm(enum.Enum):
    V1 = "v1"
    V2 = "v2"
    V2_1 = "v2.1"


class RedactionRules(enum.Enum):
    """Which redaction algorithm applies (see the spec's per-version Redactions sections)."""

    V1 = "v1"  # v1-v5: m.room.aliases keeps `aliases`
    V6 = "v6"  # v6, v7: aliases no longer special
    V8 = "v8"  # v8: join_rules keeps `allow`
    V9 = "v9"  # v9, v10: member keeps `join_authorised_via_users_server`
    V11 = "v11"  # v11, v12: create keeps all content, power levels keep `invite`, ...


class RoomDisposition(enum.Enum):
    STABLE = "stable"
    UNSTABLE = "unstable"


@dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    disposition: RoomDisposition
    event_format: EventFormat
    event_id_format: EventIdFormat
    state_res: StateResAlgorithm
    redaction_rules: RedactionRules
    # v5+: a server key's valid_until_ts must cover the event's origin_server_ts.
    enforce_key_validity: bool
    # v1-v5: m.room.aliases events are authorised by the state_key/sender domain only.
    special_case_aliases_auth: bool
    # v6+: canonical JSON allows only integers within +-(2**53 - 1); no floats.
    strict_canonical_json: bool
    # v6+: the `notifications` key of power levels is checked when it changes.
    limit_notifications_power_levels: bool
    # v7+: the `knock` join rule and membership.
    knock_join_rule: bool
    # v8+: the `restricted` join rule.
    restricted_join_rule: bool
    # v9+: the restricted join authoriser survives redaction.
    restricted_join_rule_fix: bool
    # v10+: the `knock_restricted` join rule.
    knock_restricted_join_rule: bool
    # v10+: power level values must be integers, not strings.
    enforce_int_power_levels: bool
    # v11+: no `creator` in m.room.create content; the sender is the creator.
    implicit_room_creator: bool
    # v11+: `redacts` lives in the content of m.room.redaction.
    redacts_in_content: bool
    # v12: creators (sender + additional_creators) have infinite power level.
    creators_have_infinite_power: bool
    # v12: room ID is `!` + the create event's reference hash; create not in auth_events.
    room_id_is_create_event_hash: bool
    # v11+: the 255-byte limits on sender, room_id, state_key, type and event_id are
    # enforced in bytes; older versions only ever enforced 255 codepoints, so an event
    # over the byte limit there is stored as rejected rather than dropped (as Synapse).
    strict_event_byte_limits: bool

    @property
    def uses_opaque_event_ids(self) -> bool:
        return self.event_id_format is EventIdFormat.OPAQUE


def _version(
    identifier: str,
    *,
    event_format: EventFormat,
    event_id_format: EventIdFormat,
    state_res: StateResAlgorithm,
    redaction_rules: RedactionRules,
    number: int,
) -> RoomVersion:
    """Derive the monotonic flags from the version number; the rest is explicit."""
    return RoomVersion(
        identifier=identifier,
        disposition=RoomDisposition.STABLE,
        event_format=event_format,
        event_id_format=event_id_format,
        state_res=state_res,
        redaction_rules=redaction_rules,
        enforce_key_validity=number >= 5,
        special_case_aliases_auth=number <= 5,
        strict_canonical_json=number >= 6,
        limit_notifications_power_levels=number >= 6,
        knock_join_rule=number >= 7,
        restricted_join_rule=number >= 8,
        restricted_join_rule_fix=number >= 9,
        knock_restricted_join_rule=number >= 10,
        enforce_int_power_levels=number >= 10,
        implicit_room_creator=number >= 11,
        redacts_in_content=number >= 11,
        creators_have_infinite_power=number >= 12,
        room_id_is_create_event_hash=number >= 12,
        strict_event_byte_limits=number >= 11,
    )


def _build_table() -> dict[str, RoomVersion]:
    table: dict[str, RoomVersion] = {}
    for number in range(1, 13):
        if number <= 2:
            fmt, id_fmt = EventFormat.V1, EventIdFormat.OPAQUE
        elif number == 3:
            fmt, id_fmt = EventFormat.V3, EventIdFormat.BASE64
        elif number <= 11:
            fmt, id_fmt = EventFormat.V4, EventIdFormat.URLSAFE_BASE64
        else:
            fmt, id_fmt = EventFormat.V12, EventIdFormat.URLSAFE_BASE64
        if number == 1:
            res = StateResAlgorithm.V1
        elif number <= 11:
            res = StateResAlgorithm.V2
        else:
            res = StateResAlgorithm.V2_1
        if number <= 5:
            redaction = RedactionRules.V1
        elif number <= 7:
            redaction = RedactionRules.V6
        elif number == 8:
            redaction = RedactionRules.V8
        elif number <= 10:
            redaction = RedactionRules.V9
        else:
            redaction = RedactionRules.V11
        table[str(number)] = _version(
            str(number),
            event_format=fmt,
            event_id_format=id_fmt,
            state_res=res,
            redaction_rules=redaction,
            number=number,
        )
    return table


KNOWN_ROOM_VERSIONS: Mapping[str, RoomVersion] = MappingProxyType(_build_table())

DEFAULT_ROOM_VERSION = "12"


class UnsupportedRoomVersion(ValueError):
    """The room version is not one this server knows (M_UNSUPPORTED_ROOM_VERSION)."""


def get_room_version(identifier: str) -> RoomVersion:
    try:
        return KNOWN_ROOM_VERSIONS[identifier]
    except (KeyError, TypeError):
        raise UnsupportedRoomVersion(identifier) from None
