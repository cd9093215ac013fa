"""The push rule evaluator and the server-default rules, against the spec's examples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from homeserver.errors import MatrixError
from homeserver.push.default_rules import DEFAULT_RULE_IDS, default_rules
from homeserver.push.evaluator import (
    PushContext,
    condition_matches,
    evaluate,
    glob_matches,
    member_count_matches,
    read_actions,
    split_dotted_key,
    strip_legacy_actions,
)
from homeserver.push.rules import (
    DefaultRuleChange,
    PushRule,
    UserRule,
    build_ruleset,
    parse_new_rule,
)

ME = "@me:example.org"


def context(
    event: dict[str, Any], members: int = 3, sender_level: int = 0, **levels: int
) -> PushContext:
    event = {"room_id": "!r:example.org", "sender": "@other:example.org", **event}
    return PushContext(event, members, sender_level, levels)


def matches(
    condition: dict[str, Any], event: dict[str, Any], display_name: str | None = None
) -> bool:
    return condition_matches(condition, context(event), user_id=ME, display_name=display_name)


def test_dotted_keys_follow_the_appendix_escaping() -> None:
    assert split_dotted_key("content.body") == ("content", "body")
    assert split_dotted_key("content.m\\.relates_to") == ("content", "m.relates_to")
    assert split_dotted_key("content.m\\\\foo") == ("content", "m\\foo")
    assert split_dotted_key("content.m\\xfoo") == ("content", "m\\xfoo")


def test_event_match_spec_example_topic() -> None:
    condition = {"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"}
    event = {"type": "m.room.topic", "state_key": "", "content": {"topic": "Lunch plans"}}
    assert matches(condition, event)
    assert matches(condition, {"content": {"topic": "LUNCH"}})
    assert not matches(condition, {"content": {"topic": " lunch"}})
    assert not matches(condition, {"content": {"topic": "lunc"}})
    assert not matches(condition, {"content": {"topic": None}})
    assert not matches(
        {"kind": "event_match", "key": "content.topic", "pattern": "*"}, {"content": {}}
    )


def test_event_match_body_matches_words() -> None:
    condition = {"kind": "event_match", "key": "content.body", "pattern": "ex*ple"}
    assert matches(condition, {"content": {"body": "An example event."}})
    assert matches(condition, {"content": {"body": "exple"}})
    assert matches(condition, {"content": {"body": "An exciting triple-whammy"}})
    assert not matches(condition, {"content": {"body": "examples"}})
    assert not matches(condition, {"content": {"body": "anexample"}})


def test_glob_is_case_insensitive_and_whole_value() -> None:
    assert glob_matches("m.room.*", "M.ROOM.message")
    assert not glob_matches("m.room", "m.room.message")
    assert glob_matches("a.b", "a.b") and not glob_matches("a.b", "axb")
    assert glob_matches("", "") and not glob_matches("", "x")


def test_event_property_is_spec_example() -> None:
    condition = {"kind": "event_property_is", "key": "content.m\\.federate", "value": True}
    assert matches(condition, {"type": "m.room.create", "content": {"m.federate": True}})
    assert not matches(condition, {"content": {"m.federate": "true"}})
    assert not matches(condition, {"content": {"m.federate": 1}})
    assert not matches(condition, {"content": {}})
    null = {"kind": "event_property_is", "key": "content.x", "value": None}
    assert matches(null, {"content": {"x": None}})
    assert not matches(null, {"content": {}})
    assert not matches(
        {"kind": "event_property_is", "key": "content.x", "value": 1}, {"content": {"x": True}}
    )
    assert not matches(
        {"kind": "event_property_is", "key": "content", "value": None}, {"content": {}}
    )


def test_event_property_contains_spec_example() -> None:
    condition = {
        "kind": "event_property_contains",
        "key": "content.alt_aliases",
        "value": "#myroom:example.com",
    }
    event = {
        "content": {
            "alias": "#somewhere:localhost",
            "alt_aliases": ["#somewhere:example.org", "#myroom:example.com"],
        }
    }
    assert matches(condition, event)
    assert not matches(condition, {"content": {"alt_aliases": [":example.com"]}})
    assert not matches(condition, {"content": {"alt_aliases": "#myroom:example.com"}})
    assert not matches({**condition, "value": 1}, {"content": {"alt_aliases": [True]}})


def test_contains_display_name() -> None:
    condition = {"kind": "contains_display_name"}
    assert matches(condition, {"content": {"body": "hello Alice!"}}, display_name="alice")
    assert not matches(condition, {"content": {"body": "hello Alicea"}}, display_name="alice")
    assert not matches(condition, {"content": {"body": "hello"}}, display_name=None)
    # The name is literal, not a glob.
    assert not matches(condition, {"content": {"body": "anything"}}, display_name="*")


@pytest.mark.parametrize(
    ("spec", "count", "expected"),
    [
        ("2", 2, True),
        ("2", 3, False),
        ("==2", 2, True),
        ("<2", 1, True),
        ("<2", 2, False),
        (">2", 3, True),
        (">=2", 2, True),
        ("<=2", 3, False),
        ("x2", 2, False),
        ("", 0, False),
    ],
)
def test_room_member_count(spec: str, count: int, expected: bool) -> None:
    assert member_count_matches(spec, count) is expected


def test_sender_notification_permission() -> None:
    condition = {"kind": "sender_notification_permission", "key": "room"}
    assert not condition_matches(
        condition, context({}, sender_level=49), user_id=ME, display_name=None
    )
    assert condition_matches(condition, context({}, sender_level=50), user_id=ME, display_name=None)
    assert condition_matches(
        condition, context({}, sender_level=10, room=10), user_id=ME, display_name=None
    )


def test_unknown_condition_never_matches() -> None:
    assert not matches({"kind": "org.example.whatever"}, {"content": {}})
    assert not matches({"kind": "event_match", "key": "type"}, {"type": "x"})


def test_actions() -> None:
    assert strip_legacy_actions(["notify", "dont_notify", "coalesce"]) == ["notify"]
    assert read_actions(["notify", {"set_tweak": "highlight"}]).highlight
    assert not read_actions(["notify", {"set_tweak": "highlight", "value": False}]).highlight
    assert not read_actions([{"set_tweak": "sound", "value": "default"}]).notify


def ruleset(
    user_rules: Sequence[UserRule] = (),
    changes: dict[tuple[str, str], DefaultRuleChange] | None = None,
) -> list[PushRule]:
    return list(build_ruleset(default_rules(ME), list(user_rules), changes or {}).ordered)


def outcome(
    event: dict[str, Any],
    members: int = 3,
    sender_level: int = 0,
    rules: list[PushRule] | None = None,
) -> list[Any]:
    return evaluate(
        rules if rules is not None else ruleset(), context(event, members, sender_level), user_id=ME
    )


def test_default_rules_are_the_spec_list_in_order() -> None:
    rules = default_rules(ME)
    assert [r.rule_id for r in rules["override"]] == [
        ".m.rule.master",
        ".m.rule.suppress_notices",
        ".m.rule.invite_for_me",
        ".m.rule.member_event",
        ".m.rule.is_user_mention",
        ".m.rule.is_room_mention",
        ".m.rule.tombstone",
        ".m.rule.reaction",
        ".m.rule.room.server_acl",
        ".m.rule.suppress_edits",
    ]
    assert [r.rule_id for r in rules["underride"]] == [
        ".m.rule.call",
        ".m.rule.encrypted_room_one_to_one",
        ".m.rule.room_one_to_one",
        ".m.rule.message",
        ".m.rule.encrypted",
    ]
    assert not rules["content"] and not rules["room"] and not rules["sender"]
    assert rules["override"][0].enabled is False
    assert all(r.default for kind in rules.values() for r in kind)
    invite = rules["override"][2].to_json()
    assert invite["conditions"][2] == {"key": "state_key", "kind": "event_match", "pattern": ME}
    assert len(DEFAULT_RULE_IDS) == 15


def test_default_rules_outcomes() -> None:
    sound = {"set_tweak": "sound", "value": "default"}
    highlight = {"set_tweak": "highlight"}
    message = {"type": "m.room.message", "content": {"msgtype": "m.text", "body": "hi"}}
    assert outcome(message) == ["notify"]
    assert outcome(message, members=2) == ["notify", sound]
    assert outcome({**message, "content": {"msgtype": "m.notice", "body": "hi"}}) == []
    mention = {"type": "m.room.message", "content": {"body": "x", "m.mentions": {"user_ids": [ME]}}}
    assert outcome(mention) == ["notify", sound, highlight]
    room_mention = {
        "type": "m.room.message",
        "content": {"body": "x", "m.mentions": {"room": True}},
    }
    assert outcome(room_mention, sender_level=50) == ["notify", highlight]
    assert outcome(room_mention, sender_level=0) == ["notify"]
    invite = {"type": "m.room.member", "state_key": ME, "content": {"membership": "invite"}}
    assert outcome(invite) == ["notify", sound]
    assert outcome({**invite, "state_key": "@x:y"}) == []
    assert outcome({"type": "m.room.tombstone", "state_key": "", "content": {}}) == [
        "notify",
        highlight,
    ]
    assert outcome({"type": "m.reaction", "content": {}}) == []
    edit = {
        "type": "m.room.message",
        "content": {"body": "* x", "m.relates_to": {"rel_type": "m.replace", "event_id": "$e"}},
    }
    assert outcome(edit) == []
    assert outcome({"type": "m.call.invite", "content": {}}) == [
        "notify",
        {"set_tweak": "sound", "value": "ring"},
    ]
    assert outcome({"type": "m.room.encrypted", "content": {}}, members=2) == ["notify", sound]
    assert outcome({"type": "m.room.encrypted", "content": {}}) == ["notify"]
    assert outcome({"type": "m.room.topic", "state_key": "", "content": {}}) == []
    # The master rule, once enabled, silences everything.
    muted = ruleset(changes={("override", ".m.rule.master"): DefaultRuleChange(enabled=True)})
    assert outcome(mention, rules=muted) == []


def test_user_rules_order_and_kinds() -> None:
    rules = ruleset(
        [
            UserRule("room", "!r:example.org", 0, [], None, ["dont_notify"], True),
            UserRule(
                "content", "cake", 0, [], "cake*", ["notify", {"set_tweak": "highlight"}], True
            ),
            UserRule("sender", "@other:example.org", 0, [], None, [], True),
        ]
    )
    message = {"type": "m.room.message", "content": {"body": "cakes please"}}
    assert outcome(message, rules=rules) == ["notify", {"set_tweak": "highlight"}]
    assert outcome({"type": "m.room.message", "content": {"body": "tea"}}, rules=rules) == []
    ids = [r.rule_id for r in rules]
    assert ids.index(".m.rule.master") == 0 and ids.index("cake") < ids.index("!r:example.org")
    high = UserRule("override", "b", 5, [], None, ["notify"], True)
    low = UserRule("override", "a", 1, [], None, [], True)
    ordered = [r.rule_id for r in ruleset([low, high])][:4]
    assert ordered == [".m.rule.master", "b", "a", ".m.rule.suppress_notices"]


def test_parse_new_rule_validation() -> None:
    assert parse_new_rule("content", "x", {"pattern": "p", "actions": ["notify"]}).pattern == "p"
    assert parse_new_rule("override", "x", {"actions": []}).conditions == []
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("override", ".mine", {"actions": []}),
        ("override", "a/b", {"actions": []}),
        ("override", "x", {}),
        ("override", "x", {"actions": ["explode"]}),
        ("override", "x", {"actions": [], "conditions": [{"kind": "event_match", "key": "type"}]}),
        ("override", "x", {"actions": [], "conditions": [{"key": "type"}]}),
        ("override", "x", {"actions": [], "conditions": "no"}),
        ("content", "x", {"actions": []}),
        ("nonsense", "x", {"actions": []}),
    ]
    for kind, rule_id, body in cases:
        with pytest.raises(MatrixError) as raised:
            parse_new_rule(kind, rule_id, body)
        assert raised.value.status == 400
