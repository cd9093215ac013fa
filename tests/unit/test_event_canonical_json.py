"""Canonical JSON encoding and the v6+ strict number rules."""

from __future__ import annotations

import pytest

from homeserver.events.canonical_json import (
    MAX_SAFE_INTEGER,
    check_strict_canonical_json,
    decode_json,
    encode_canonical_json,
    validate_canonical_json,
)
from homeserver.events.errors import EventValidationError
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, get_room_version

STRICT_VERSIONS = [v for v in KNOWN_ROOM_VERSIONS.values() if int(v.identifier) >= 6]
LENIENT_VERSIONS = [v for v in KNOWN_ROOM_VERSIONS.values() if int(v.identifier) <= 5]

NON_CANONICAL_VALUES = [
    pytest.param({"content": {"n": 1.5}}, id="float"),
    pytest.param({"content": {"n": 2.0}}, id="integral-float"),
    pytest.param({"content": {"n": [1, {"deep": 0.1}]}}, id="nested-float"),
    pytest.param({"content": {"n": 2**53}}, id="int-above-range"),
    pytest.param({"content": {"n": -(2**53)}}, id="int-below-range"),
    pytest.param({"depth": 2**63}, id="top-level-big-int"),
    pytest.param({"content": {"n": (1, 2.5)}}, id="float-in-tuple"),
]


def test_encoding_sorts_keys_and_keeps_utf8() -> None:
    value = {"b": 1, "a": "日本", "c": [True, None, {"z": 0, "y": -1}]}
    assert encode_canonical_json(value) == (
        '{"a":"日本","b":1,"c":[true,null,{"y":-1,"z":0}]}'.encode()
    )


def test_control_characters_use_short_escapes() -> None:
    assert encode_canonical_json({"a": "\n\t\x01\x7f"}) == b'{"a":"\\n\\t\\u0001\x7f"}'


@pytest.mark.parametrize("room_version", STRICT_VERSIONS, ids=lambda v: f"v{v.identifier}")
@pytest.mark.parametrize("value", NON_CANONICAL_VALUES)
def test_strict_versions_reject_floats_and_big_ints(room_version, value) -> None:
    with pytest.raises(EventValidationError):
        validate_canonical_json(value, room_version)


@pytest.mark.parametrize("room_version", LENIENT_VERSIONS, ids=lambda v: f"v{v.identifier}")
@pytest.mark.parametrize("value", NON_CANONICAL_VALUES)
def test_lenient_versions_accept_floats_and_big_ints(room_version, value) -> None:
    validate_canonical_json(value, room_version)
    # ... and can still hash them.
    assert encode_canonical_json(value)


@pytest.mark.parametrize("room_version", STRICT_VERSIONS, ids=lambda v: f"v{v.identifier}")
def test_strict_versions_accept_the_range_limits(room_version) -> None:
    value = {
        "max": MAX_SAFE_INTEGER,
        "min": -MAX_SAFE_INTEGER,
        "flags": [True, False, None],
        "s": "1.5",
    }
    validate_canonical_json(value, room_version)


def test_error_names_the_path() -> None:
    with pytest.raises(EventValidationError, match=r"content\.list\[1\]\.x"):
        check_strict_canonical_json({"content": {"list": [0, {"x": 0.5}]}})
    with pytest.raises(EventValidationError, match=r"content\.big"):
        check_strict_canonical_json({"content": {"big": 2**60}})


def test_non_json_types_are_refused() -> None:
    with pytest.raises(EventValidationError, match="not JSON"):
        check_strict_canonical_json({"a": {1, 2}})
    with pytest.raises(EventValidationError, match="non-string object key"):
        check_strict_canonical_json({1: "a"})


def test_nan_and_infinity_cannot_be_encoded() -> None:
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(EventValidationError):
            encode_canonical_json({"a": bad})


def test_lone_surrogate_cannot_be_encoded() -> None:
    with pytest.raises(EventValidationError, match="Unicode"):
        encode_canonical_json({"a": "\ud800"})


def test_decode_refuses_nan_and_infinity() -> None:
    for text in ('{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}'):
        with pytest.raises(EventValidationError):
            decode_json(text)
    assert decode_json(b'{"a": [1, "x"]}') == {"a": [1, "x"]}


def test_decode_refuses_bad_input() -> None:
    with pytest.raises(EventValidationError, match="UTF-8"):
        decode_json(b'{"a": "\xff"}')
    with pytest.raises(EventValidationError, match="invalid JSON"):
        decode_json("{")


def test_v5_float_pdu_encodes_as_python_float() -> None:
    # Lenient versions hash whatever canonicaljson makes of the value, as other servers do.
    validate_canonical_json({"a": 1.5}, get_room_version("5"))
    assert encode_canonical_json({"a": 1.5}) == b'{"a":1.5}'
