"""The redaction algorithm: one test per RedactionRules variant, keys as rooms/vN.md list them."""

from __future__ import annotations

import copy

import pytest

from homeserver.events.hashing import make_event
from homeserver.events.redaction import prune_event, prune_event_dict, top_level_keys_kept
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, RedactionRules, get_room_version

ALL_TOP_LEVEL = {
    "event_id": "$e:example.org",
    "type": "X",
    "room_id": "!r:example.org",
    "sender": "@a:example.org",
    "state_key": "",
    "content": {},
    "hashes": {"sha256": "h"},
    "signatures": {"example.org": {"ed25519:a": "s"}},
    "depth": 3,
    "prev_events": ["$p"],
    "prev_state": [],
    "auth_events": ["$a"],
    "origin": "example.org",
    "origin_server_ts": 1000,
    "membership": "join",
    "unsigned": {"age": 1},
    "age_ts": 999,
    "redacts": "$target",
    "custom": "value",
}

V1_TOP = {
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
    "depth", "prev_events", "prev_state", "auth_events", "origin", "origin_server_ts",
    "membership",
}  # fmt: skip
V11_TOP = V1_TOP - {"origin", "membership", "prev_state"}

CONTENT = {
    "m.room.member": {
        "membership": "join",
        "displayname": "Alice",
        "avatar_url": "mxc://x/y",
        "join_authorised_via_users_server": "@b:example.org",
        "third_party_invite": {"display_name": "a@b.c", "signed": {"mxid": "@a:x", "token": "t"}},
        "reason": "because",
    },
    "m.room.create": {
        "creator": "@a:example.org",
        "room_version": "1",
        "m.federate": False,
        "predecessor": {"room_id": "!old:x"},
        "type": "m.space",
    },
    "m.room.join_rules": {
        "join_rule": "restricted",
        "allow": [{"type": "m.room_membership", "room_id": "!x:y"}],
        "other": 1,
    },
    "m.room.power_levels": {
        "ban": 50,
        "events": {"m.room.name": 50},
        "events_default": 0,
        "invite": 0,
        "kick": 50,
        "redact": 50,
        "state_default": 50,
        "users": {"@a:example.org": 100},
        "users_default": 0,
        "notifications": {"room": 50},
        "historical": 100,
    },
    "m.room.aliases": {"aliases": ["#a:example.org"], "other": 1},
    "m.room.history_visibility": {"history_visibility": "shared", "other": 1},
    "m.room.redaction": {"redacts": "$target", "reason": "spam"},
    "m.room.message": {"msgtype": "m.text", "body": "hi"},
    "m.room.name": {"name": "Room"},
}


def _pdu(event_type: str) -> dict:
    pdu = copy.deepcopy(ALL_TOP_LEVEL)
    pdu["type"] = event_type
    pdu["content"] = copy.deepcopy(CONTENT[event_type])
    return pdu


def _content_after(rules_versions: list[str], event_type: str) -> list[dict]:
    return [
        prune_event_dict(_pdu(event_type), get_room_version(v))["content"] for v in rules_versions
    ]


def _assert_top_level(versions: list[str], expected: set[str]) -> None:
    for v in versions:
        room_version = get_room_version(v)
        assert set(prune_event_dict(_pdu("m.room.message"), room_version)) == expected, v
        assert top_level_keys_kept(room_version) == expected


def _assert_common_content(versions: list[str]) -> None:
    """Rules every variant shares: unlisted types lose all content; power levels' core keys."""
    for content in _content_after(versions, "m.room.message"):
        assert content == {}
    for content in _content_after(versions, "m.room.name"):
        assert content == {}
    for content in _content_after(versions, "m.room.history_visibility"):
        assert content == {"history_visibility": "shared"}


PL_V1 = {
    "ban": 50, "events": {"m.room.name": 50}, "events_default": 0, "kick": 50, "redact": 50,
    "state_default": 50, "users": {"@a:example.org": 100}, "users_default": 0,
}  # fmt: skip


def test_rules_variants_cover_every_room_version() -> None:
    by_rules: dict[RedactionRules, list[str]] = {}
    for room_version in KNOWN_ROOM_VERSIONS.values():
        by_rules.setdefault(room_version.redaction_rules, []).append(room_version.identifier)
    assert by_rules == {
        RedactionRules.V1: ["1", "2", "3", "4", "5"],
        RedactionRules.V6: ["6", "7"],
        RedactionRules.V8: ["8"],
        RedactionRules.V9: ["9", "10"],
        RedactionRules.V11: ["11", "12"],
    }


def test_v1_rules() -> None:
    versions = ["1", "2", "3", "4", "5"]
    _assert_top_level(versions, V1_TOP)
    _assert_common_content(versions)
    for content in _content_after(versions, "m.room.aliases"):
        assert content == {"aliases": ["#a:example.org"]}
    for content in _content_after(versions, "m.room.member"):
        assert content == {"membership": "join"}
    for content in _content_after(versions, "m.room.create"):
        assert content == {"creator": "@a:example.org"}
    for content in _content_after(versions, "m.room.join_rules"):
        assert content == {"join_rule": "restricted"}
    for content in _content_after(versions, "m.room.power_levels"):
        assert content == PL_V1
    for content in _content_after(versions, "m.room.redaction"):
        assert content == {}


def test_v6_rules_drop_aliases() -> None:
    versions = ["6", "7"]
    _assert_top_level(versions, V1_TOP)
    _assert_common_content(versions)
    for content in _content_after(versions, "m.room.aliases"):
        assert content == {}
    for content in _content_after(versions, "m.room.member"):
        assert content == {"membership": "join"}
    for content in _content_after(versions, "m.room.create"):
        assert content == {"creator": "@a:example.org"}
    for content in _content_after(versions, "m.room.join_rules"):
        assert content == {"join_rule": "restricted"}
    for content in _content_after(versions, "m.room.power_levels"):
        assert content == PL_V1


def test_v8_rules_keep_join_rules_allow() -> None:
    versions = ["8"]
    _assert_top_level(versions, V1_TOP)
    _assert_common_content(versions)
    for content in _content_after(versions, "m.room.join_rules"):
        assert content == {
            "join_rule": "restricted",
            "allow": [{"type": "m.room_membership", "room_id": "!x:y"}],
        }
    for content in _content_after(versions, "m.room.member"):
        assert content == {"membership": "join"}
    for content in _content_after(versions, "m.room.aliases"):
        assert content == {}
    for content in _content_after(versions, "m.room.create"):
        assert content == {"creator": "@a:example.org"}


def test_v9_rules_keep_join_authorised_via_users_server() -> None:
    versions = ["9", "10"]
    _assert_top_level(versions, V1_TOP)
    _assert_common_content(versions)
    for content in _content_after(versions, "m.room.member"):
        assert content == {
            "membership": "join",
            "join_authorised_via_users_server": "@b:example.org",
        }
    for content in _content_after(versions, "m.room.join_rules"):
        assert set(content) == {"join_rule", "allow"}
    for content in _content_after(versions, "m.room.power_levels"):
        assert content == PL_V1
    for content in _content_after(versions, "m.room.redaction"):
        assert content == {}


def test_v11_rules() -> None:
    versions = ["11", "12"]
    _assert_top_level(versions, V11_TOP)
    _assert_common_content(versions)
    for content in _content_after(versions, "m.room.create"):
        assert content == CONTENT["m.room.create"]
    for content in _content_after(versions, "m.room.power_levels"):
        assert content == {**PL_V1, "invite": 0}
    for content in _content_after(versions, "m.room.redaction"):
        assert content == {"redacts": "$target"}
    for content in _content_after(versions, "m.room.member"):
        assert content == {
            "membership": "join",
            "join_authorised_via_users_server": "@b:example.org",
            "third_party_invite": {"signed": {"mxid": "@a:x", "token": "t"}},
        }
    for content in _content_after(versions, "m.room.aliases"):
        assert content == {}


def test_v11_third_party_invite_without_signed_is_kept_empty() -> None:
    # "will only contain the signed key after redaction": an object without it stays {},
    # which changes the reference hash (and Synapse keeps it too).
    pdu = _pdu("m.room.member")
    pdu["content"]["third_party_invite"] = {"display_name": "x"}
    content = prune_event_dict(pdu, get_room_version("11"))["content"]
    assert content == {
        "membership": "join",
        "join_authorised_via_users_server": "@b:example.org",
        "third_party_invite": {},
    }
    pdu["content"]["third_party_invite"] = "not an object"
    content = prune_event_dict(pdu, get_room_version("11"))["content"]
    assert "third_party_invite" not in content


@pytest.mark.parametrize(
    "room_version", KNOWN_ROOM_VERSIONS.values(), ids=lambda v: f"v{v.identifier}"
)
def test_prune_does_not_touch_its_input(room_version) -> None:
    for event_type in CONTENT:
        pdu = _pdu(event_type)
        before = copy.deepcopy(pdu)
        prune_event_dict(pdu, room_version)
        assert pdu == before


def test_content_that_is_not_an_object_is_kept_as_is() -> None:
    pdu = _pdu("m.room.message")
    pdu["content"] = "not an object"
    assert prune_event_dict(pdu, get_room_version("10"))["content"] == "not an object"


def test_prune_event_keeps_identity_and_server_metadata() -> None:
    room_version = get_room_version("10")
    pdu = _pdu("m.room.message")
    del pdu["event_id"]
    pdu["unsigned"] = {
        "age_ts": 5,
        "redacted_because": {"type": "m.room.redaction"},
        "prev_content": {"secret": 1},
        "transaction_id": "t",
    }
    event = make_event(pdu, room_version)
    event.internal_metadata["stream_ordering"] = 7
    event.rejected_reason = "auth_error"

    redacted = prune_event(event)
    assert redacted.event_id == event.event_id
    assert redacted.content == {}
    assert redacted.unsigned == {"age_ts": 5, "redacted_because": {"type": "m.room.redaction"}}
    assert redacted.internal_metadata == {"stream_ordering": 7, "redacted": True}
    assert redacted.rejected_reason == "auth_error"
    assert "redacted" not in event.internal_metadata
    assert event.content == CONTENT["m.room.message"]
    # The redacted event still hashes to the same ID.
    assert make_event(prune_event_dict(pdu, room_version), room_version).event_id == event.event_id
