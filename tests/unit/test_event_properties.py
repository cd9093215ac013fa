"""Property tests: redaction is idempotent, hashes/IDs/signatures survive JSON round trips."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from signedjson.key import generate_signing_key

from homeserver.events.canonical_json import MAX_SAFE_INTEGER, encode_canonical_json
from homeserver.events.hashing import (
    add_content_hash,
    check_content_hash,
    compute_event_id,
    make_event,
)
from homeserver.events.redaction import prune_event_dict
from homeserver.events.signing import sign_event, verify_event_signatures, verify_key_for
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

KEY = generate_signing_key("p")
KEYS = {("example.org", "ed25519:p"): verify_key_for(KEY, 2**53)}

room_versions = st.sampled_from(list(KNOWN_ROOM_VERSIONS.values()))

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    ),
    max_leaves=20,
)

SPECIAL_CONTENT_KEYS = [
    "membership",
    "join_authorised_via_users_server",
    "third_party_invite",
    "creator",
    "join_rule",
    "allow",
    "ban",
    "invite",
    "users",
    "aliases",
    "history_visibility",
    "redacts",
    "body",
]
content_keys = st.one_of(st.sampled_from(SPECIAL_CONTENT_KEYS), st.text(max_size=10))
contents = st.dictionaries(content_keys, json_values, max_size=6)
event_types = st.one_of(
    st.sampled_from(
        [
            "m.room.member",
            "m.room.create",
            "m.room.join_rules",
            "m.room.power_levels",
            "m.room.aliases",
            "m.room.history_visibility",
            "m.room.redaction",
            "m.room.message",
        ]
    ),
    st.text(min_size=1, max_size=20),
)
extra_top_level = st.dictionaries(
    st.sampled_from(["origin", "membership", "prev_state", "redacts", "age_ts", "custom"]),
    json_values,
    max_size=3,
)


@st.composite
def pdus(draw: st.DrawFn, room_version: RoomVersion) -> dict[str, Any]:
    pdu: dict[str, Any] = {
        "type": draw(event_types),
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "origin_server_ts": draw(st.integers(min_value=0, max_value=2**42)),
        "depth": draw(st.integers(min_value=0, max_value=2**20)),
        "prev_events": ["$prev"],
        "auth_events": ["$auth"],
        "content": draw(contents),
    }
    if draw(st.booleans()):
        pdu["state_key"] = draw(st.text(max_size=10))
    if draw(st.booleans()):
        pdu["unsigned"] = {"age": draw(st.integers(min_value=0, max_value=10**6))}
    pdu.update(draw(extra_top_level))
    if room_version.uses_opaque_event_ids:
        pdu["event_id"] = "$e:example.org"
    else:
        pdu.pop("event_id", None)
    return pdu


@st.composite
def versioned_pdus(draw: st.DrawFn) -> tuple[RoomVersion, dict[str, Any]]:
    room_version = draw(room_versions)
    return room_version, draw(pdus(room_version))


def _round_trip(value: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(encode_canonical_json(value))
    return decoded


@given(versioned_pdus())
def test_redaction_is_idempotent(case: tuple[RoomVersion, dict[str, Any]]) -> None:
    room_version, pdu = case
    once = prune_event_dict(pdu, room_version)
    assert prune_event_dict(once, room_version) == once


@given(versioned_pdus())
def test_redaction_only_removes(case: tuple[RoomVersion, dict[str, Any]]) -> None:
    room_version, pdu = case
    pruned = prune_event_dict(pdu, room_version)
    assert set(pruned) <= set(pdu)
    for key, value in pruned.items():
        if key != "content":
            assert value is pdu[key]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(versioned_pdus())
def test_hash_and_event_id_survive_a_json_round_trip(
    case: tuple[RoomVersion, dict[str, Any]],
) -> None:
    room_version, pdu = case
    add_content_hash(pdu)
    event_id = compute_event_id(pdu, room_version)

    decoded = _round_trip(pdu)
    assert encode_canonical_json(decoded) == encode_canonical_json(pdu)
    assert check_content_hash(decoded)
    assert compute_event_id(decoded, room_version) == event_id


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(versioned_pdus())
def test_signatures_survive_round_trip_and_redaction(
    case: tuple[RoomVersion, dict[str, Any]],
) -> None:
    room_version, pdu = case
    sign_event(pdu, "example.org", KEY, room_version)
    decoded = _round_trip(pdu)
    verify_event_signatures(make_event(decoded, room_version), KEYS)
    redacted = prune_event_dict(decoded, room_version)
    event = make_event(redacted, room_version)
    verify_event_signatures(event, KEYS)
    assert event.event_id == make_event(decoded, room_version).event_id
