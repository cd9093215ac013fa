"""Signing events and verifying their signatures, third-party invite signatures."""

from __future__ import annotations

import base64
import copy

import pytest
from signedjson.key import generate_signing_key, get_verify_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from homeserver.events.errors import InvalidEventSignatureError
from homeserver.events.hashing import check_content_hash, make_event
from homeserver.events.redaction import prune_event_dict
from homeserver.events.signing import (
    required_signatures,
    sign_event,
    verify_event,
    verify_event_signatures,
    verify_key_for,
    verify_third_party_invite_signed,
)
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, get_room_version

TS = 1_700_000_000_000
ALL_VERSIONS = list(KNOWN_ROOM_VERSIONS.values())

ORIGIN_KEY = generate_signing_key("a")
OTHER_KEY = generate_signing_key("b")
RESIDENT_KEY = generate_signing_key("r")


def _keys() -> dict:
    return {
        ("origin.org", "ed25519:a"): verify_key_for(ORIGIN_KEY, TS + 1000),
        ("other.org", "ed25519:b"): verify_key_for(OTHER_KEY, TS + 1000),
        ("resident.org", "ed25519:r"): verify_key_for(RESIDENT_KEY, TS + 1000),
    }


def _pdu(room_version, **extra) -> dict:
    v1 = room_version.uses_opaque_event_ids
    pdu = {
        "type": "m.room.message",
        "room_id": "!room:origin.org",
        "sender": "@alice:origin.org",
        "origin_server_ts": TS,
        "depth": 3,
        "prev_events": [["$p:origin.org", {"sha256": "x"}]] if v1 else ["$p"],
        "auth_events": [],
        "content": {"msgtype": "m.text", "body": "hello"},
    }
    if v1:
        pdu["event_id"] = "$1:origin.org"
    pdu.update(extra)
    return pdu


def _signed_event(room_version, server="origin.org", key=ORIGIN_KEY, **extra):
    pdu = _pdu(room_version, **extra)
    sign_event(pdu, server, key, room_version)
    return make_event(pdu, room_version)


@pytest.mark.parametrize("room_version", ALL_VERSIONS, ids=lambda v: f"v{v.identifier}")
def test_sign_then_verify(room_version) -> None:
    event = _signed_event(room_version)
    assert set(event.signatures) == {"origin.org"}
    assert set(event.signatures["origin.org"]) == {"ed25519:a"}
    assert check_content_hash(event.pdu)
    verify_event_signatures(event, _keys())
    assert verify_event(event, _keys()) is event


@pytest.mark.parametrize("room_version", ALL_VERSIONS, ids=lambda v: f"v{v.identifier}")
def test_signature_covers_the_redacted_form(room_version) -> None:
    # The signature is made over the redacted event, so it holds on a redacted copy...
    event = _signed_event(room_version)
    redacted = make_event(prune_event_dict(event.pdu, room_version), room_version)
    verify_event_signatures(redacted, _keys())


def test_tampered_redactable_content_fails_the_hash_and_is_redacted() -> None:
    room_version = get_room_version("10")
    event = _signed_event(room_version)
    pdu = copy.deepcopy(event.pdu)
    pdu["content"]["body"] = "tampered"
    tampered = make_event(pdu, room_version)
    verify_event_signatures(tampered, _keys())  # the signature does not cover the body
    checked = verify_event(tampered, _keys())
    assert checked is not tampered
    assert checked.content == {}
    assert checked.event_id == tampered.event_id


@pytest.mark.parametrize("room_version", ALL_VERSIONS, ids=lambda v: f"v{v.identifier}")
def test_tampered_essential_content_fails_the_signature(room_version) -> None:
    event = _signed_event(
        room_version,
        type="m.room.member",
        state_key="@alice:origin.org",
        content={"membership": "join"},
    )
    pdu = copy.deepcopy(event.pdu)
    pdu["content"]["membership"] = "leave"
    with pytest.raises(InvalidEventSignatureError, match="invalid"):
        verify_event_signatures(make_event(pdu, room_version), _keys())


def test_tampered_top_level_key_fails_the_signature() -> None:
    room_version = get_room_version("12")
    event = _signed_event(room_version)
    pdu = copy.deepcopy(event.pdu)
    pdu["origin_server_ts"] += 1
    with pytest.raises(InvalidEventSignatureError):
        verify_event(make_event(pdu, room_version), _keys())


def test_wrong_key_fails() -> None:
    room_version = get_room_version("10")
    event = _signed_event(room_version)
    impostor = verify_key_for(OTHER_KEY, TS + 1000)
    with pytest.raises(InvalidEventSignatureError, match="invalid"):
        verify_event_signatures(event, {**_keys(), ("origin.org", "ed25519:a"): impostor})


def test_garbage_signature_fails() -> None:
    room_version = get_room_version("10")
    event = _signed_event(room_version)
    event.pdu["signatures"]["origin.org"]["ed25519:a"] = "not-base64!!"
    with pytest.raises(InvalidEventSignatureError):
        verify_event_signatures(event, _keys())


def test_missing_signature_fails() -> None:
    room_version = get_room_version("10")
    event = _signed_event(room_version)
    del event.pdu["signatures"]["origin.org"]
    with pytest.raises(InvalidEventSignatureError, match=r"not signed by origin\.org"):
        verify_event_signatures(event, _keys())


def test_signature_by_the_wrong_server_fails() -> None:
    room_version = get_room_version("10")
    event = _signed_event(room_version, server="other.org", key=OTHER_KEY)
    with pytest.raises(InvalidEventSignatureError, match=r"origin\.org"):
        verify_event_signatures(event, _keys())


def test_unknown_key_only_fails_but_is_skipped_beside_a_known_one() -> None:
    room_version = get_room_version("10")
    event = _signed_event(room_version)
    keys = _keys()
    del keys[("origin.org", "ed25519:a")]
    with pytest.raises(InvalidEventSignatureError, match="known, unexpired key"):
        verify_event_signatures(event, keys)

    event.pdu["signatures"]["origin.org"]["ed25519:unknown"] = "AAAA"
    verify_event_signatures(event, _keys())


def test_unsupported_algorithms_are_ignored() -> None:
    room_version = get_room_version("10")
    event = _signed_event(room_version)
    event.pdu["signatures"]["origin.org"]["curve25519:x"] = "AAAA"
    verify_event_signatures(event, _keys())


@pytest.mark.parametrize("identifier", ["5", "6", "10", "11", "12"])
def test_expired_key_is_refused_from_v5(identifier: str) -> None:
    room_version = get_room_version(identifier)
    event = _signed_event(room_version)
    expired = {("origin.org", "ed25519:a"): verify_key_for(ORIGIN_KEY, TS - 1)}
    with pytest.raises(InvalidEventSignatureError, match="unexpired"):
        verify_event_signatures(event, {**_keys(), **expired})
    # valid_until_ts equal to origin_server_ts is still valid ("at least as large").
    verify_event_signatures(event, {("origin.org", "ed25519:a"): verify_key_for(ORIGIN_KEY, TS)})


@pytest.mark.parametrize("identifier", ["1", "2", "3", "4"])
def test_expired_key_is_accepted_before_v5(identifier: str) -> None:
    room_version = get_room_version(identifier)
    event = _signed_event(room_version)
    verify_event_signatures(event, {("origin.org", "ed25519:a"): verify_key_for(ORIGIN_KEY, 0)})


def test_callable_key_lookup() -> None:
    room_version = get_room_version("10")
    event = _signed_event(room_version)
    asked: list[tuple[str, str]] = []

    def lookup(server_name: str, key_id: str):
        asked.append((server_name, key_id))
        return _keys().get((server_name, key_id))

    verify_event_signatures(event, lookup)
    assert asked == [("origin.org", "ed25519:a")]


@pytest.mark.parametrize("identifier", ["1", "2"])
def test_v1_v2_require_the_event_id_server(identifier: str) -> None:
    room_version = get_room_version(identifier)
    pdu = _pdu(room_version, event_id="$1:other.org")
    sign_event(pdu, "origin.org", ORIGIN_KEY, room_version)
    event = make_event(pdu, room_version)
    assert required_signatures(event) == {"origin.org", "other.org"}
    with pytest.raises(InvalidEventSignatureError, match=r"not signed by other\.org"):
        verify_event_signatures(event, _keys())
    sign_event(pdu, "other.org", OTHER_KEY, room_version)
    verify_event_signatures(make_event(pdu, room_version), _keys())


def test_v3_plus_do_not_look_at_event_id_servers() -> None:
    for identifier in [str(n) for n in range(3, 13)]:
        event = _signed_event(get_room_version(identifier))
        assert required_signatures(event) == {"origin.org"}


def _restricted_join(room_version) -> dict:
    return _pdu(
        room_version,
        type="m.room.member",
        state_key="@alice:origin.org",
        content={"membership": "join", "join_authorised_via_users_server": "@bob:resident.org"},
    )


@pytest.mark.parametrize("identifier", [str(n) for n in range(8, 13)])
def test_restricted_join_requires_the_authorising_server(identifier: str) -> None:
    room_version = get_room_version(identifier)
    pdu = _restricted_join(room_version)
    sign_event(pdu, "origin.org", ORIGIN_KEY, room_version)
    event = make_event(pdu, room_version)
    assert required_signatures(event) == {"origin.org", "resident.org"}
    with pytest.raises(InvalidEventSignatureError, match=r"resident\.org"):
        verify_event_signatures(event, _keys())

    # The resident server co-signs; the joining server's signature stays.
    sign_event(pdu, "resident.org", RESIDENT_KEY, room_version)
    assert set(pdu["signatures"]) == {"origin.org", "resident.org"}
    verify_event_signatures(make_event(pdu, room_version), _keys())


@pytest.mark.parametrize("identifier", ["3", "7"])
def test_authorising_server_is_not_required_before_v8(identifier: str) -> None:
    room_version = get_room_version(identifier)
    pdu = _restricted_join(room_version)
    sign_event(pdu, "origin.org", ORIGIN_KEY, room_version)
    event = make_event(pdu, room_version)
    assert required_signatures(event) == {"origin.org"}
    verify_event_signatures(event, _keys())


def test_invite_requires_only_the_senders_server() -> None:
    room_version = get_room_version("10")
    pdu = _pdu(
        room_version,
        type="m.room.member",
        state_key="@carol:other.org",
        content={"membership": "invite"},
    )
    sign_event(pdu, "origin.org", ORIGIN_KEY, room_version)
    assert required_signatures(make_event(pdu, room_version)) == {"origin.org"}


def test_third_party_invite_does_not_require_the_senders_server() -> None:
    room_version = get_room_version("10")
    pdu = _pdu(
        room_version,
        type="m.room.member",
        state_key="@carol:other.org",
        content={"membership": "invite", "third_party_invite": {"signed": {}}},
    )
    sign_event(pdu, "other.org", OTHER_KEY, room_version)
    event = make_event(pdu, room_version)
    assert required_signatures(event) == set()
    verify_event_signatures(event, _keys())


def test_sign_event_is_stable_and_overwrites_its_own_signature() -> None:
    room_version = get_room_version("10")
    pdu = _pdu(room_version)
    sign_event(pdu, "origin.org", ORIGIN_KEY, room_version)
    first = copy.deepcopy(pdu)
    sign_event(pdu, "origin.org", ORIGIN_KEY, room_version)
    assert pdu == first  # Ed25519 is deterministic


# --- third-party invite signed blocks ------------------------------------------------


def _identity_server_key():
    return generate_signing_key("0")


def _signed_block(key) -> dict:
    return sign_json({"mxid": "@carol:other.org", "token": "abc"}, "id.example", key)


def _public_key(key, *, urlsafe: bool = False) -> str:
    raw = get_verify_key(key).encode()
    return encode_base64(raw, urlsafe=urlsafe)


def test_third_party_invite_signature_verifies() -> None:
    key = _identity_server_key()
    signed = _signed_block(key)
    assert verify_third_party_invite_signed(signed, _public_key(key))
    assert verify_third_party_invite_signed(signed, _public_key(key, urlsafe=True))
    padded = base64.b64encode(get_verify_key(key).encode()).decode()
    assert verify_third_party_invite_signed(signed, padded)


def test_third_party_invite_any_of_several_keys() -> None:
    key = _identity_server_key()
    signed = _signed_block(key)
    other = _public_key(_identity_server_key())
    assert verify_third_party_invite_signed(signed, ["not a key", other, _public_key(key)])
    assert not verify_third_party_invite_signed(signed, [other])
    assert not verify_third_party_invite_signed(signed, [])


def test_third_party_invite_tampered_or_malformed() -> None:
    key = _identity_server_key()
    signed = _signed_block(key)
    tampered = {**signed, "mxid": "@mallory:evil.org"}
    assert not verify_third_party_invite_signed(tampered, _public_key(key))
    assert not verify_third_party_invite_signed({"mxid": "@c:x", "token": "t"}, _public_key(key))
    assert not verify_third_party_invite_signed("not a dict", _public_key(key))
    assert not verify_third_party_invite_signed({"signatures": {"x": "y"}}, _public_key(key))
    assert not verify_third_party_invite_signed(signed, "%%%")
