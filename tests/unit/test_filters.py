"""Filter validation and matching (spec: "Filtering")."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.errors import MatrixError
from homeserver.handlers.filters import Filter, RoomEventFilter, apply_event_fields


@pytest.mark.parametrize(
    "body",
    [
        [],
        "x",
        {"event_format": "xml"},
        {"event_fields": "content"},
        {"event_fields": [1]},
        {"presence": []},
        {"presence": {"limit": "10"}},
        {"presence": {"limit": -1}},
        {"presence": {"limit": 1.5}},
        {"presence": {"limit": True}},
        {"presence": {"types": "m.presence"}},
        {"presence": {"senders": ["not-a-user"]}},
        {"account_data": {"not_types": [1]}},
        {"room": {"rooms": ["not-a-room"]}},
        {"room": {"not_rooms": "!a:b"}},
        {"room": {"include_leave": "true"}},
        {"room": {"timeline": {"limit": "5"}}},
        {"room": {"state": {"lazy_load_members": "true"}}},
        {"room": {"state": {"lazy_load_members": 1}}},
        {"room": {"state": {"include_redundant_members": 1}}},
        {"room": {"timeline": {"contains_url": "yes"}}},
        {"room": {"ephemeral": {"not_senders": [None]}}},
        {"room": {"account_data": []}},
        {"room": "all"},
    ],
)
def test_invalid_filters_are_bad_json(body: Any) -> None:
    with pytest.raises(MatrixError) as e:
        Filter.from_json(body)
    assert (e.value.status, e.value.errcode) == (400, "M_BAD_JSON")


def test_valid_filter_parses_with_unknown_keys_kept_out_of_the_way() -> None:
    parsed = Filter.from_json(
        {
            "event_fields": ["type", "content.body"],
            "event_format": "federation",
            "presence": {"not_types": ["*"]},
            "account_data": {"types": ["m.push_rules"], "limit": 0},
            "room": {
                "rooms": ["!a:hs.test"],
                "include_leave": True,
                "timeline": {"limit": 20, "lazy_load_members": True, "types": ["m.room.*"]},
                "state": {"lazy_load_members": True, "include_redundant_members": False},
                "org.example.future": {"anything": 1},
            },
            "org.example.unknown": [1, 2],
        }
    )
    assert parsed.event_format == "federation"
    assert parsed.presence.blocks_all()
    assert parsed.account_data.limit == 0
    assert parsed.room.include_leave and parsed.room.allows_room("!a:hs.test")
    assert not parsed.room.allows_room("!b:hs.test")
    assert parsed.room.timeline.limit == 20 and parsed.room.state.lazy_load_members
    assert Filter.from_json({}) == Filter()


def test_room_event_filter_matching() -> None:
    from homeserver.events.model import Event
    from homeserver.room_versions import KNOWN_ROOM_VERSIONS

    def event(event_type: str, sender: str, content: dict[str, Any]) -> Event:
        pdu = {"type": event_type, "sender": sender, "content": content, "room_id": "!r:hs.test"}
        return Event(pdu, KNOWN_ROOM_VERSIONS["10"], "$x")

    message = event("m.room.message", "@a:hs.test", {"body": "hi"})
    image = event("m.room.message", "@b:hs.test", {"url": "mxc://hs.test/x"})
    topic = event("m.room.topic", "@a:hs.test", {"topic": "t"})
    assert RoomEventFilter().filter([message, image, topic]) == [message, image, topic]
    only = RoomEventFilter.from_json({"types": ["m.room.m*"], "not_senders": ["@b:hs.test"]})
    assert only.filter([message, image, topic]) == [message]
    assert RoomEventFilter.from_json({"contains_url": True}).filter([message, image]) == [image]
    assert RoomEventFilter.from_json({"not_types": ["*"]}).filter([message]) == []
    # not_* wins over the allow-list.
    both = RoomEventFilter.from_json({"senders": ["@a:hs.test"], "not_senders": ["@a:hs.test"]})
    assert both.filter([message]) == []
    assert RoomEventFilter.from_json({"rooms": ["!other:hs.test"]}).filter([message]) == []


def test_query_param() -> None:
    assert RoomEventFilter.from_query_param(None) is None
    assert RoomEventFilter.from_query_param('{"limit": 3}') == RoomEventFilter(limit=3)
    with pytest.raises(MatrixError) as e:
        RoomEventFilter.from_query_param("{nope")
    assert e.value.errcode == "M_NOT_JSON"
    with pytest.raises(MatrixError) as e:
        RoomEventFilter.from_query_param("[1]")
    assert e.value.errcode == "M_BAD_JSON"


def test_event_fields() -> None:
    event = {
        "type": "m.room.message",
        "content": {"body": "hi", "m.relates_to": {"rel_type": "x"}, "a.b": 1},
        "sender": "@a:hs.test",
    }
    assert apply_event_fields(event, None) is event
    assert apply_event_fields(event, ["type", "content.body", "content.a\\.b", "missing.x"]) == {
        "type": "m.room.message",
        "content": {"body": "hi", "a.b": 1},
    }
    assert apply_event_fields(event, ["content.m\\.relates_to.rel_type"]) == {
        "content": {"m.relates_to": {"rel_type": "x"}}
    }
    assert apply_event_fields(event, ["content.m.relates_to"]) == {}
