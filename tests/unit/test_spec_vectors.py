"""Every official vector of the spec pack (vendored as tests/unit/data/spec-test-vectors.json)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from signedjson.key import decode_signing_key_base64, get_verify_key
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64, encode_base64

from homeserver.events.canonical_json import encode_canonical_json
from homeserver.events.hashing import check_content_hash, compute_content_hash, make_event
from homeserver.events.redaction import prune_event_dict
from homeserver.events.signing import sign_event, verify_event_signatures, verify_key_for
from homeserver.events.validation import is_valid_room_version_identifier, is_valid_server_name
from homeserver.room_versions import get_room_version

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS_PATH = Path(__file__).resolve().parent / "data" / "spec-test-vectors.json"

if not VECTORS_PATH.is_file():
    raise FileNotFoundError(f"spec test vectors not found at {VECTORS_PATH}")
PACK: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
VECTORS: list[dict[str, Any]] = PACK["vectors"]
SIGNING_KEY_INFO: dict[str, Any] = PACK["signing_key"]

# The vectors predate room versions; their notes say they reproduce with the pre-v11
# redaction rules, which room version 1 uses.
LEGACY_ROOM_VERSION = get_room_version("1")


def _signing_key():
    return decode_signing_key_base64(
        SIGNING_KEY_INFO["algorithm"],
        SIGNING_KEY_INFO["key_id"].split(":", 1)[1],
        SIGNING_KEY_INFO["seed_base64"],
    )


def _parse_spec_json(text: str) -> Any:
    # The spec's number examples (-0, 1e10) are integers in JSON's data model; Python
    # would read 1e10 as a float, so integral floats become ints here.
    def parse_float(literal: str) -> int:
        value = float(literal)
        assert value.is_integer(), literal
        return int(value)

    return json.loads(text, parse_float=parse_float)


def test_pack_counts_match() -> None:
    assert len(VECTORS) == PACK["counts"]["vectors_total"]
    by_category: dict[str, int] = {}
    for vector in VECTORS:
        by_category[vector["category"]] = by_category.get(vector["category"], 0) + 1
    assert by_category == PACK["counts"]["by_category"]


def test_signing_key_seed() -> None:
    key = _signing_key()
    assert key.encode().hex() == SIGNING_KEY_INFO["derived_seed_hex"]
    assert encode_base64(key.encode()) == SIGNING_KEY_INFO["derived_seed_canonical_unpadded_base64"]
    assert (
        encode_base64(get_verify_key(key).encode())
        == SIGNING_KEY_INFO["derived_public_key_unpadded_base64"]
    )
    assert (
        len(decode_base64(SIGNING_KEY_INFO["seed_base64"])) == SIGNING_KEY_INFO["seed_length_bytes"]
    )


def _check_unpadded_base64(vector: dict[str, Any]) -> None:
    raw = vector["input"].encode("utf-8")
    assert encode_base64(raw) == vector["expected_output"]
    assert decode_base64(vector["expected_output"]) == raw


def _check_canonical_json(vector: dict[str, Any]) -> None:
    value = _parse_spec_json(vector["input_json_text"])
    assert encode_canonical_json(value) == vector["expected_output"].encode("utf-8")


def _check_json_signing(vector: dict[str, Any]) -> None:
    key = _signing_key()
    server_name = SIGNING_KEY_INFO["server_name"]
    key_id = SIGNING_KEY_INFO["key_id"]
    message = encode_canonical_json(vector["input"])
    assert message == vector["derived"]["bytes_signed_canonical_json"].encode("utf-8")
    signature = encode_base64(key.sign(message).signature)
    assert signature == vector["expected_signature"]
    signed = {**copy.deepcopy(vector["input"]), "signatures": {server_name: {key_id: signature}}}
    assert signed == vector["expected_output"]
    verify_signed_json(vector["expected_output"], server_name, get_verify_key(key))


def _check_event_signing(vector: dict[str, Any]) -> None:
    key = _signing_key()
    server_name = SIGNING_KEY_INFO["server_name"]
    pdu = copy.deepcopy(vector["input"])

    content_hash = compute_content_hash(pdu)
    assert encode_base64(content_hash) == vector["expected_content_hash_sha256"]

    sign_event(pdu, server_name, key, LEGACY_ROOM_VERSION)
    assert pdu == vector["expected_output"]
    assert check_content_hash(pdu)

    redacted = prune_event_dict(pdu, LEGACY_ROOM_VERSION)
    del redacted["signatures"]
    assert encode_canonical_json(redacted) == vector["derived"][
        "redacted_bytes_signed_canonical_json"
    ].encode("utf-8")

    # The official output also verifies through the event-level check. An event_id is
    # covered by the signature, so the vector without one is read as a v4 event (the same
    # redaction rules as v1, IDs computed rather than carried).
    expected = copy.deepcopy(vector["expected_output"])
    room_version = LEGACY_ROOM_VERSION if "event_id" in expected else get_room_version("4")
    event = make_event(expected, room_version)
    keys = {(server_name, SIGNING_KEY_INFO["key_id"]): verify_key_for(key, 0)}
    verify_event_signatures(event, keys)


_CHECKS = {
    "unpadded_base64": _check_unpadded_base64,
    "canonical_json": _check_canonical_json,
    "json_signing": _check_json_signing,
    "event_signing": _check_event_signing,
}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    check = _CHECKS.get(vector["category"])
    assert check is not None, f"no check for vector category {vector['category']!r}"
    check(vector)


_GRAMMAR_CHECKS = {
    "server_name": is_valid_server_name,
    "room_version_identifier": is_valid_room_version_identifier,
}


@pytest.mark.parametrize(
    "example",
    PACK["grammar_examples"],
    ids=[f"{e['category']}:{e['input']}" for e in PACK["grammar_examples"]],
)
def test_grammar_example(example: dict[str, Any]) -> None:
    check = _GRAMMAR_CHECKS.get(example["category"])
    assert check is not None, f"no check for grammar category {example['category']!r}"
    assert check(example["input"]) is example["expected_valid"]
