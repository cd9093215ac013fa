"""The client (ClientEvent) and federation (PDU) formats of an event."""

from __future__ import annotations

import copy

import pytest
from signedjson.key import generate_signing_key

from homeserver.events.formats import (
    accept_received_unsigned,
    serialize_for_client,
    serialize_for_federation,
)
from homeserver.events.hashing import make_event
from homeserver.events.signing import sign_event
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, get_room_version

KEY = generate_signing_key("a")
TS = 1_700_000_000_000
NOW = TS + 2_500


def _event(identifier: str, **extra):
    room_version = get_room_version(identifier)
    pdu = {
        "type": "m.room.message",
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "origin_server_ts": TS,
        "depth": 3,
        "prev_events": [],
        "auth_events": [],
        "content": {"body": "hi", "msgtype": "m.text"},
    }
    if room_version.uses_opaque_event_ids:
        pdu["event_id"] = "$1:example.org"
    pdu.update(extra)
    unsigned = pdu.pop("unsigned", None)
    sign_event(pdu, "example.org", KEY, room_version)
    if unsigned is not None:
        pdu["unsigned"] = unsigned
    return make_event(pdu, room_version)


@pytest.mark.parametrize("identifier", list(KNOWN_ROOM_VERSIONS))
def test_client_format_has_exactly_the_client_keys(identifier: str) -> None:
    event = _event(identifier, origin="example.org")
    before = copy.deepcopy(event.pdu)
    client = serialize_for_client(event, NOW)
    assert client == {
        "event_id": event.event_id,
        "room_id": "!room:example.org",
        "type": "m.room.message",
        "sender": "@alice:example.org",
        "content": {"body": "hi", "msgtype": "m.text"},
        "origin_server_ts": TS,
        "unsigned": {"age": 2_500},
    }
    assert event.pdu == before


def test_client_format_state_event_and_options() -> None:
    event = _event(
        "10",
        type="m.room.name",
        state_key="",
        content={"name": "Room"},
        unsigned={"age_ts": TS + 500, "replaces_state": "$old"},
    )
    client = serialize_for_client(
        event,
        NOW,
        include_room_id=False,
        extra_unsigned={"transaction_id": "txn1", "prev_content": {"name": "Old"}},
    )
    assert client["state_key"] == ""
    assert "room_id" not in client
    # age counts from age_ts when the server recorded one.
    assert client["unsigned"] == {
        "age": 2_000,
        "replaces_state": "$old",
        "transaction_id": "txn1",
        "prev_content": {"name": "Old"},
    }


@pytest.mark.parametrize("identifier", [str(n) for n in range(1, 11)])
def test_redaction_before_v11_gets_redacts_in_content_too(identifier: str) -> None:
    event = _event(identifier, type="m.room.redaction", redacts="$target", content={})
    client = serialize_for_client(event, NOW)
    assert client["redacts"] == "$target"
    assert client["content"] == {"redacts": "$target"}
    assert event.content == {}, "the stored event is untouched"


@pytest.mark.parametrize("identifier", ["11", "12"])
def test_redaction_from_v11_gets_top_level_redacts_too(identifier: str) -> None:
    event = _event(
        identifier, type="m.room.redaction", content={"redacts": "$target", "reason": "x"}
    )
    client = serialize_for_client(event, NOW)
    assert client["redacts"] == "$target"
    assert client["content"] == {"redacts": "$target", "reason": "x"}


def test_v12_create_event_client_format_has_derived_room_id() -> None:
    room_version = get_room_version("12")
    pdu = {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@alice:example.org",
        "origin_server_ts": TS,
        "depth": 1,
        "prev_events": [],
        "auth_events": [],
        "content": {"room_version": "12"},
    }
    sign_event(pdu, "example.org", KEY, room_version)
    event = make_event(pdu, room_version)
    client = serialize_for_client(event, NOW)
    assert client["room_id"] == "!" + event.event_id[1:]


@pytest.mark.parametrize("identifier", ["1", "2"])
def test_federation_format_keeps_event_id_for_v1_v2(identifier: str) -> None:
    event = _event(identifier)
    pdu = serialize_for_federation(event)
    assert pdu["event_id"] == "$1:example.org"
    assert pdu == event.pdu


@pytest.mark.parametrize("identifier", [str(n) for n in range(3, 13)])
def test_federation_format_has_no_event_id_from_v3(identifier: str) -> None:
    event = _event(identifier)
    pdu = serialize_for_federation(event)
    assert "event_id" not in pdu
    assert pdu == event.pdu
    # What we send hashes to the same ID on the other side.
    assert make_event(pdu, event.room_version).event_id == event.event_id


def test_federation_format_unsigned() -> None:
    event = _event(
        "10",
        type="m.room.member",
        state_key="@bob:other.org",
        content={"membership": "invite"},
        unsigned={
            "age_ts": TS + 100,
            "invite_room_state": [{"type": "m.room.name"}],
            "redacted_because": {},
            "transaction_id": "t",
        },
    )
    before = copy.deepcopy(event.pdu)
    assert serialize_for_federation(event)["unsigned"] == {
        "invite_room_state": [{"type": "m.room.name"}]
    }
    assert serialize_for_federation(event, NOW)["unsigned"] == {
        "invite_room_state": [{"type": "m.room.name"}],
        "age": 2_400,
    }
    assert event.pdu == before

    bare = _event("10")
    assert serialize_for_federation(bare, NOW)["unsigned"] == {"age": 2_500}
    assert "unsigned" not in serialize_for_federation(bare)
    only_local = _event("10", unsigned={"transaction_id": "t"})
    assert "unsigned" not in serialize_for_federation(only_local)


def test_accept_received_unsigned() -> None:
    pdu = {
        "type": "m.room.member",
        "unsigned": {
            "age": 300,
            "age_ts": 1,
            "invite_room_state": [],
            "redacted_because": {"forged": True},
        },
    }
    accept_received_unsigned(pdu, received_ms=10_000)
    assert pdu["unsigned"] == {"invite_room_state": [], "age_ts": 9_700}

    message = {"type": "m.room.message", "unsigned": {"age": "x", "invite_room_state": []}}
    accept_received_unsigned(message, received_ms=10_000)
    assert message["unsigned"] == {}

    broken = {"type": "m.room.message", "unsigned": "nope"}
    accept_received_unsigned(broken, received_ms=10_000)
    assert broken["unsigned"] == {}

    absent = {"type": "m.room.message"}
    accept_received_unsigned(absent, received_ms=10_000)
    assert absent == {"type": "m.room.message"}
