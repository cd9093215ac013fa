"""PDU format checks: required keys per format, size limits, identifier grammar."""

from __future__ import annotations

import pytest
from signedjson.key import generate_signing_key

from homeserver.events.canonical_json import encode_canonical_json
from homeserver.events.errors import EventSizeError, EventValidationError
from homeserver.events.hashing import make_event, room_id_from_create_event
from homeserver.events.signing import sign_event
from homeserver.events.validation import (
    MAX_PDU_SIZE,
    is_valid_event_id,
    is_valid_room_id,
    is_valid_server_name,
    is_valid_user_id,
    validate_event,
    validate_pdu,
)
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, get_room_version

KEY = generate_signing_key("a")
ALL_VERSIONS = list(KNOWN_ROOM_VERSIONS.values())
HASH_ID = "A" * 43
V12_ROOM = "!" + "r" * 43


def _pdu(room_version, **extra) -> dict:
    v1 = room_version.uses_opaque_event_ids
    if room_version.room_id_is_create_event_hash:
        room_id = V12_ROOM
    else:
        room_id = "!room:example.org"
    pdu = {
        "type": "m.room.message",
        "room_id": room_id,
        "sender": "@alice:example.org",
        "origin_server_ts": 1_700_000_000_000,
        "depth": 3,
        "prev_events": [["$p:example.org", {"sha256": "x"}]] if v1 else ["$" + HASH_ID],
        "auth_events": [["$a:example.org", {"sha256": "y"}]] if v1 else ["$" + "B" * 43],
        "content": {"body": "hi"},
    }
    if v1:
        pdu["event_id"] = "$1:example.org"
    pdu.update(extra)
    sign_event(pdu, "example.org", KEY, room_version)
    return pdu


@pytest.mark.parametrize("room_version", ALL_VERSIONS, ids=lambda v: f"v{v.identifier}")
def test_well_formed_pdu_passes(room_version) -> None:
    pdu = _pdu(room_version, state_key="", type="m.room.topic", unsigned={"age": 1})
    validate_pdu(pdu, room_version)
    validate_event(make_event(pdu, room_version))


REQUIRED = [
    "type",
    "sender",
    "origin_server_ts",
    "depth",
    "content",
    "hashes",
    "signatures",
    "prev_events",
    "auth_events",
    "room_id",
]


@pytest.mark.parametrize("room_version", ALL_VERSIONS, ids=lambda v: f"v{v.identifier}")
@pytest.mark.parametrize("key", REQUIRED)
def test_missing_required_key_fails(room_version, key: str) -> None:
    pdu = _pdu(room_version)
    del pdu[key]
    with pytest.raises(EventValidationError, match=key):
        validate_pdu(pdu, room_version)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("type", 5),
        ("sender", ["@a:b"]),
        ("origin_server_ts", "1"),
        ("origin_server_ts", True),
        ("depth", 1.0),
        ("depth", -1),
        ("content", []),
        ("state_key", 0),
        ("unsigned", []),
        ("hashes", {"sha256": 1}),
        ("signatures", {"example.org": "sig"}),
        ("prev_events", "$x"),
    ],
)
def test_wrong_types_fail(key: str, value) -> None:
    room_version = get_room_version("10")
    pdu = _pdu(room_version)
    pdu[key] = value
    with pytest.raises(EventValidationError, match=key):
        validate_pdu(pdu, room_version)


@pytest.mark.parametrize("identifier", ["1", "2"])
def test_v1_format_needs_event_id_and_pairs(identifier: str) -> None:
    room_version = get_room_version(identifier)
    pdu = _pdu(room_version)
    del pdu["event_id"]
    with pytest.raises(EventValidationError, match="event_id"):
        validate_pdu(pdu, room_version)
    pdu = _pdu(room_version, prev_events=["$p:example.org"])
    with pytest.raises(EventValidationError, match="pairs"):
        validate_pdu(pdu, room_version)
    pdu = _pdu(room_version, event_id="$no-server")
    with pytest.raises(EventValidationError, match="event_id"):
        validate_pdu(pdu, room_version)


@pytest.mark.parametrize("identifier", [str(n) for n in range(3, 13)])
def test_hashed_formats_refuse_event_id_and_pairs(identifier: str) -> None:
    room_version = get_room_version(identifier)
    with pytest.raises(EventValidationError, match="event_id"):
        validate_pdu(_pdu(room_version, event_id="$1:example.org"), room_version)
    with pytest.raises(EventValidationError, match="event ID strings"):
        validate_pdu(_pdu(room_version, prev_events=[["$p", {}]]), room_version)


def test_event_id_alphabet_per_format() -> None:
    v3, v4 = get_room_version("3"), get_room_version("4")
    standard = "$" + "a+/b" * 10 + "abc"
    urlsafe = "$" + "a-_b" * 10 + "abc"
    assert is_valid_event_id(standard, v3) and not is_valid_event_id(standard, v4)
    assert is_valid_event_id(urlsafe, v4) and not is_valid_event_id(urlsafe, v3)
    assert not is_valid_event_id("$short", v4)
    assert is_valid_event_id("$anything:example.org", get_room_version("1"))
    with pytest.raises(EventValidationError, match="malformed event ID"):
        validate_pdu(_pdu(v4, auth_events=[standard]), v4)


def test_too_many_prev_and_auth_events() -> None:
    room_version = get_room_version("10")
    validate_pdu(_pdu(room_version, prev_events=["$" + HASH_ID] * 20), room_version)
    with pytest.raises(EventValidationError, match="at most 20"):
        validate_pdu(_pdu(room_version, prev_events=["$" + HASH_ID] * 21), room_version)
    validate_pdu(_pdu(room_version, auth_events=["$" + HASH_ID] * 10), room_version)
    with pytest.raises(EventValidationError, match="at most 10"):
        validate_pdu(_pdu(room_version, auth_events=["$" + HASH_ID] * 11), room_version)


def _v12_create(**extra) -> dict:
    room_version = get_room_version("12")
    pdu = _pdu(
        room_version,
        type="m.room.create",
        state_key="",
        prev_events=[],
        auth_events=[],
        content={"room_version": "12"},
        depth=1,
        **extra,
    )
    return pdu


def test_v12_create_event_has_no_room_id() -> None:
    room_version = get_room_version("12")
    pdu = _v12_create()
    del pdu["room_id"]
    validate_pdu(pdu, room_version)
    with pytest.raises(EventValidationError, match="must not carry a room_id"):
        validate_pdu(_v12_create(), room_version)


def test_v12_events_need_hash_room_ids_and_no_create_in_auth_events() -> None:
    room_version = get_room_version("12")
    create = _v12_create()
    del create["room_id"]
    sign_event(create, "example.org", KEY, room_version)
    room_id = room_id_from_create_event(create, room_version)
    create_id = make_event(create, room_version).event_id

    validate_pdu(_pdu(room_version, room_id=room_id), room_version)
    with pytest.raises(EventValidationError, match="auth_events"):
        validate_pdu(_pdu(room_version, room_id=room_id, auth_events=[create_id]), room_version)
    with pytest.raises(EventValidationError, match="room_id"):
        validate_pdu(_pdu(room_version, room_id="!room:example.org"), room_version)
    # Before v12 the create event is an ordinary auth event and room IDs have a server.
    v11 = get_room_version("11")
    validate_pdu(_pdu(v11, auth_events=[create_id]), v11)
    with pytest.raises(EventValidationError, match="room_id"):
        validate_pdu(_pdu(v11, room_id=room_id), v11)


@pytest.mark.parametrize("identifier", [str(n) for n in range(6, 13)])
def test_strict_canonical_json_in_validation(identifier: str) -> None:
    room_version = get_room_version(identifier)
    with pytest.raises(EventValidationError, match="float"):
        validate_pdu(_pdu(room_version, content={"n": 1.5}), room_version)
    with pytest.raises(EventValidationError, match="range"):
        validate_pdu(_pdu(room_version, content={"n": 2**53}), room_version)


@pytest.mark.parametrize("identifier", ["1", "3", "5"])
def test_lenient_canonical_json_in_validation(identifier: str) -> None:
    room_version = get_room_version(identifier)
    validate_pdu(_pdu(room_version, content={"n": 1.5, "big": 2**60}), room_version)


# --- size limits -----------------------------------------------------------------------


def test_whole_pdu_size_limit_counts_signatures() -> None:
    room_version = get_room_version("10")
    pdu = _pdu(room_version)
    overhead = len(encode_canonical_json(pdu))
    body_len = MAX_PDU_SIZE - overhead + len('"hi"') - 2  # exactly at the limit
    pdu = _pdu(room_version, content={"body": "x" * body_len})
    size = len(encode_canonical_json(pdu))
    assert size == MAX_PDU_SIZE
    validate_pdu(pdu, room_version)

    pdu["signatures"]["other.org"] = {"ed25519:z": "s"}
    with pytest.raises(EventSizeError, match="larger than 65536"):
        validate_pdu(pdu, room_version)


@pytest.mark.parametrize("key", ["sender", "room_id", "state_key", "type", "event_id"])
def test_key_codepoint_limit(key: str) -> None:
    room_version = get_room_version("1")
    value = {
        "sender": "@" + "a" * 250 + ":example.org",
        "room_id": "!" + "a" * 250 + ":example.org",
        "state_key": "s" * 256,
        "type": "t" * 256,
        "event_id": "$" + "a" * 250 + ":example.org",
    }[key]
    pdu = _pdu(room_version, **{key: value})
    with pytest.raises(EventSizeError, match=f"'{key}' is longer than 255 characters") as info:
        validate_pdu(pdu, room_version)
    assert info.value.persist_as_rejected is False


@pytest.mark.parametrize("key", ["state_key", "type"])
@pytest.mark.parametrize(
    ("identifier", "persist_as_rejected"), [("1", True), ("10", True), ("11", False), ("12", False)]
)
def test_key_byte_limit(key: str, identifier: str, persist_as_rejected: bool) -> None:
    room_version = get_room_version(identifier)
    value = "é" * 200  # 200 codepoints, 400 bytes
    pdu = _pdu(room_version, **{key: value})
    with pytest.raises(EventSizeError, match=f"'{key}' is longer than 255 bytes") as info:
        validate_pdu(pdu, room_version)
    assert info.value.persist_as_rejected is persist_as_rejected


def test_state_key_and_type_at_255_bytes_pass() -> None:
    room_version = get_room_version("11")
    validate_pdu(_pdu(room_version, state_key="s" * 255, type="t" * 255), room_version)


# --- identifier grammar ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "historical", "strict"),
    [
        ("@alice:example.org", True, True),
        ("@a.b_c=d-e/f+g:example.org:8448", True, True),
        ("@Alice:example.org", True, False),  # historical: upper case
        ("@:example.org", True, False),  # historical: empty localpart
        ("@al ice:[::1]", True, False),
        ("alice:example.org", False, False),
        ("@alice", False, False),
        ("@alice:", False, False),
        ("@alice:exa mple.org", False, False),
        ("@a\x00b:example.org", False, False),
        ("@" + "a" * 250 + ":example.org", False, False),  # over 255 bytes
    ],
)
def test_user_id_grammar(user_id: str, historical: bool, strict: bool) -> None:
    assert is_valid_user_id(user_id) is historical
    assert is_valid_user_id(user_id, historical=False) is strict


def test_room_id_grammar() -> None:
    v11, v12 = get_room_version("11"), get_room_version("12")
    assert is_valid_room_id("!abc:example.org", v11)
    assert not is_valid_room_id("!abc", v11)
    assert not is_valid_room_id("#abc:example.org", v11)
    assert is_valid_room_id(V12_ROOM, v12)
    assert not is_valid_room_id("!abc:example.org", v12)
    assert not is_valid_room_id("!" + "+" * 43, v12)


@pytest.mark.parametrize(
    "server_name",
    ["example.org", "example.org:8448", "1.2.3.4", "[::1]", "[1234:5678::abcd]:5678", "a-b.c"],
)
def test_server_name_grammar_valid(server_name: str) -> None:
    assert is_valid_server_name(server_name)


@pytest.mark.parametrize(
    "server_name",
    ["", "exa mple.org", "example.org:", "example.org:123456", "[::1", "ex_ample.org", "é.org"],
)
def test_server_name_grammar_invalid(server_name: str) -> None:
    assert not is_valid_server_name(server_name)


def test_invalid_sender_fails_validation() -> None:
    room_version = get_room_version("10")
    with pytest.raises(EventValidationError, match="sender"):
        validate_pdu(_pdu(room_version, sender="alice"), room_version)


def test_redacts_must_be_a_string_before_v11() -> None:
    room_version = get_room_version("10")
    with pytest.raises(EventValidationError, match="redacts"):
        validate_pdu(_pdu(room_version, type="m.room.redaction", redacts=5), room_version)
    validate_pdu(_pdu(room_version, type="m.room.redaction", redacts="$x"), room_version)


def test_non_object_pdu_fails() -> None:
    with pytest.raises(EventValidationError, match="JSON object"):
        validate_pdu([], get_room_version("10"))  # type: ignore[arg-type]
