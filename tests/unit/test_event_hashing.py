"""Content hashes, reference hashes, event IDs per format and v12 room IDs."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from homeserver.events.errors import EventValidationError
from homeserver.events.hashing import (
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    event_reference,
    make_event,
    room_id_from_create_event,
)
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, get_room_version


def _b64(data: bytes, *, urlsafe: bool = False) -> str:
    encoded = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return encoded.decode("ascii").rstrip("=")


def _sha256_of_json(value: dict) -> bytes:
    # An independent canonical encoding, straight from the spec's appendix.
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).digest()


def _message_pdu(depth: int = 5, **extra) -> dict:
    pdu = {
        "type": "m.room.message",
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "origin_server_ts": 1_700_000_000_000,
        "depth": depth,
        "prev_events": ["$prev"],
        "auth_events": ["$auth"],
        "content": {"msgtype": "m.text", "body": "hello"},
        "hashes": {"sha256": "placeholder"},
        "signatures": {"example.org": {"ed25519:a": "sig"}},
        "unsigned": {"age": 5},
    }
    pdu.update(extra)
    return pdu


def _expected_redacted(pdu: dict) -> dict:
    """The redacted form of ``_message_pdu`` minus signatures/unsigned, written out by hand."""
    return {
        "type": pdu["type"],
        "room_id": pdu["room_id"],
        "sender": pdu["sender"],
        "origin_server_ts": pdu["origin_server_ts"],
        "depth": pdu["depth"],
        "prev_events": pdu["prev_events"],
        "auth_events": pdu["auth_events"],
        "content": {},
        "hashes": pdu["hashes"],
    }


def _pdu_with_both_alphabets_in_hash() -> dict:
    """A PDU whose reference hash, in base64, uses the characters v3 and v4 encode apart."""
    for depth in range(1, 10_000):
        pdu = _message_pdu(depth)
        encoded = _b64(_sha256_of_json(_expected_redacted(pdu)))
        if any(c in encoded for c in "+/"):
            return pdu
    raise AssertionError("no suitable PDU found")


@pytest.mark.parametrize("identifier", ["1", "2"])
def test_opaque_event_ids_come_from_the_pdu(identifier: str) -> None:
    room_version = get_room_version(identifier)
    pdu = _message_pdu(event_id="$abc:example.org")
    assert compute_event_id(pdu, room_version) == "$abc:example.org"
    assert make_event(pdu, room_version).event_id == "$abc:example.org"
    del pdu["event_id"]
    with pytest.raises(EventValidationError, match="event_id"):
        compute_event_id(pdu, room_version)


def test_v3_event_id_is_standard_base64_of_reference_hash() -> None:
    pdu = _pdu_with_both_alphabets_in_hash()
    digest = _sha256_of_json(_expected_redacted(pdu))
    event_id = compute_event_id(pdu, get_room_version("3"))
    assert event_id == "$" + _b64(digest)
    assert any(c in event_id for c in "+/")
    assert len(event_id) == 44


@pytest.mark.parametrize("identifier", [str(n) for n in range(4, 12)])
def test_v4_to_v11_event_ids_are_urlsafe_base64(identifier: str) -> None:
    pdu = _pdu_with_both_alphabets_in_hash()
    room_version = get_room_version(identifier)
    digest = _sha256_of_json(_expected_redacted(pdu))
    event_id = compute_event_id(pdu, room_version)
    assert event_id == "$" + _b64(digest, urlsafe=True)
    assert not any(c in event_id for c in "+/")
    assert make_event(pdu, room_version).event_id == event_id


def test_v12_event_id_is_urlsafe_base64() -> None:
    pdu = _pdu_with_both_alphabets_in_hash()
    digest = _sha256_of_json(_expected_redacted(pdu))
    assert compute_event_id(pdu, get_room_version("12")) == "$" + _b64(digest, urlsafe=True)


def test_reference_hash_drops_legacy_keys_only_where_redaction_does() -> None:
    pdu = _message_pdu(origin="example.org")
    with_origin = {**_expected_redacted(pdu), "origin": "example.org"}
    assert compute_reference_hash(pdu, get_room_version("10")) == _sha256_of_json(with_origin)
    assert compute_reference_hash(pdu, get_room_version("11")) == _sha256_of_json(
        _expected_redacted(pdu)
    )


def test_event_id_ignores_signatures_unsigned_and_redactable_content() -> None:
    room_version = get_room_version("10")
    pdu = _message_pdu()
    event_id = compute_event_id(pdu, room_version)
    changed = _message_pdu(
        signatures={"other.org": {"ed25519:b": "x"}},
        unsigned={"age": 99999},
        content={"body": "something else"},
    )
    assert compute_event_id(changed, room_version) == event_id
    # ...but the content hash, which the ID covers, does change it.
    changed["hashes"] = {"sha256": "different"}
    assert compute_event_id(changed, room_version) != event_id


@pytest.mark.parametrize("identifier", [str(n) for n in range(3, 13)])
def test_make_event_refuses_event_id_in_hashed_formats(identifier: str) -> None:
    with pytest.raises(EventValidationError, match="must not carry an event_id"):
        make_event(_message_pdu(event_id="$x:example.org"), get_room_version(identifier))


def test_content_hash_matches_spec_definition() -> None:
    pdu = _message_pdu()
    expected = {k: v for k, v in pdu.items() if k not in ("hashes", "signatures", "unsigned")}
    assert compute_content_hash(pdu) == _sha256_of_json(expected)


def test_add_and_check_content_hash() -> None:
    pdu = _message_pdu()
    del pdu["hashes"]
    add_content_hash(pdu)
    assert pdu["hashes"] == {"sha256": _b64(compute_content_hash(pdu))}
    assert check_content_hash(pdu)

    pdu["unsigned"] = {"age": 1, "anything": True}
    pdu["signatures"] = {}
    assert check_content_hash(pdu), "unsigned and signatures are outside the hash"

    pdu["content"] = {"body": "tampered"}
    assert not check_content_hash(pdu)


def test_add_content_hash_keeps_other_algorithms() -> None:
    pdu = _message_pdu(hashes={"sha512": "other"})
    add_content_hash(pdu)
    assert set(pdu["hashes"]) == {"sha256", "sha512"}
    assert check_content_hash(pdu)


@pytest.mark.parametrize(
    "hashes", [None, "string", {}, {"sha256": 5}, {"sha256": "!!not base64 é"}]
)
def test_check_content_hash_is_false_for_malformed_hashes(hashes) -> None:
    pdu = _message_pdu(hashes=hashes)
    assert check_content_hash(pdu) is False


def _create_pdu(room_version_id: str, **extra) -> dict:
    pdu = {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@alice:example.org",
        "origin_server_ts": 1_700_000_000_000,
        "depth": 1,
        "prev_events": [],
        "auth_events": [],
        "content": {"room_version": room_version_id},
        "hashes": {"sha256": "h"},
        "signatures": {},
    }
    pdu.update(extra)
    return pdu


def test_v12_room_id_is_the_create_event_reference_hash() -> None:
    room_version = get_room_version("12")
    pdu = _create_pdu("12", content={"room_version": "12", "additional_creators": ["@b:x.org"]})
    expected_redacted = {
        k: v for k, v in pdu.items() if k not in ("signatures", "unsigned")
    }  # v11+ redaction keeps all create content
    room_id = room_id_from_create_event(pdu, room_version)
    assert room_id == "!" + _b64(_sha256_of_json(expected_redacted), urlsafe=True)
    event = make_event(pdu, room_version)
    assert room_id == "!" + event.event_id[1:]
    assert event.room_id == room_id


def test_room_id_before_v12_is_the_create_events_room_id() -> None:
    pdu = _create_pdu("11", room_id="!abc:example.org")
    assert room_id_from_create_event(pdu, get_room_version("11")) == "!abc:example.org"
    with pytest.raises(EventValidationError):
        room_id_from_create_event(_create_pdu("11"), get_room_version("11"))


def test_room_id_from_non_create_event_is_refused() -> None:
    with pytest.raises(EventValidationError, match=r"m\.room\.create"):
        room_id_from_create_event(_message_pdu(), get_room_version("12"))


def test_event_reference_pairs_for_v1() -> None:
    room_version = get_room_version("1")
    pdu = _message_pdu(event_id="$e:example.org")
    event = make_event(pdu, room_version)
    redacted = {**_expected_redacted(pdu), "event_id": "$e:example.org"}
    assert event_reference(event) == ["$e:example.org", {"sha256": _b64(_sha256_of_json(redacted))}]


def test_every_known_room_version_computes_an_id() -> None:
    for room_version in KNOWN_ROOM_VERSIONS.values():
        pdu = _message_pdu()
        if room_version.uses_opaque_event_ids:
            pdu["event_id"] = "$x:example.org"
        assert compute_event_id(pdu, room_version).startswith("$")


def test_v12_create_type_event_is_hashed_without_a_room_id() -> None:
    # "room_id ... Omitted from m.room.create events" (v12): a stray one carrying it is
    # named as if it did not, as Synapse names it (differential seed 3ab14687).
    from homeserver.events.hashing import compute_event_id
    from homeserver.room_versions import get_room_version

    rv = get_room_version("12")
    pdu = {
        "type": "m.room.create",
        "state_key": "x",
        "sender": "@u:a.test",
        "content": {"room_version": "12"},
        "prev_events": [],
        "auth_events": [],
        "depth": 3,
        "origin_server_ts": 1,
        "hashes": {"sha256": "aaaa"},
        "signatures": {},
    }
    with_room = {**pdu, "room_id": "!r"}
    assert compute_event_id(with_room, rv) == compute_event_id(pdu, rv)
    # Other event types keep room_id in their hash.
    message = {**pdu, "type": "m.room.message"}
    message.pop("state_key")
    assert compute_event_id({**message, "room_id": "!r"}, rv) != compute_event_id(message, rv)
