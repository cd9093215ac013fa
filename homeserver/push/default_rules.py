"""The server-default push rules of spec v1.19 ("Predefined Rules"), in priority order.

v1.17 removed the legacy body-matching defaults (``.m.rule.contains_display_name``,
``.m.rule.roomnotif``, ``.m.rule.contains_user_name``); mentions go through
``m.mentions`` now. There are no default content, room or sender rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from homeserver.push.rules import KINDS, PushRule

# Stands for the owner's user ID in the definitions below.
_ME = "\x00me"

_SOUND_DEFAULT = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}

_OVERRIDE: list[tuple[str, bool, list[dict[str, Any]], list[Any]]] = [
    (".m.rule.master", False, [], []),
    (
        ".m.rule.suppress_notices",
        True,
        [{"kind": "event_match", "key": "content.msgtype", "pattern": "m.notice"}],
        [],
    ),
    (
        ".m.rule.invite_for_me",
        True,
        [
            {"key": "type", "kind": "event_match", "pattern": "m.room.member"},
            {"key": "content.membership", "kind": "event_match", "pattern": "invite"},
            {"key": "state_key", "kind": "event_match", "pattern": _ME},
        ],
        ["notify", _SOUND_DEFAULT],
    ),
    (
        ".m.rule.member_event",
        True,
        [{"key": "type", "kind": "event_match", "pattern": "m.room.member"}],
        [],
    ),
    (
        ".m.rule.is_user_mention",
        True,
        [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": _ME}],
        ["notify", _SOUND_DEFAULT, _HIGHLIGHT],
    ),
    (
        ".m.rule.is_room_mention",
        True,
        [
            {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
            {"kind": "sender_notification_permission", "key": "room"},
        ],
        ["notify", _HIGHLIGHT],
    ),
    (
        ".m.rule.tombstone",
        True,
        [
            {"kind": "event_match", "key": "type", "pattern": "m.room.tombstone"},
            {"kind": "event_match", "key": "state_key", "pattern": ""},
        ],
        ["notify", _HIGHLIGHT],
    ),
    (
        ".m.rule.reaction",
        True,
        [{"kind": "event_match", "key": "type", "pattern": "m.reaction"}],
        [],
    ),
    (
        ".m.rule.room.server_acl",
        True,
        [
            {"kind": "event_match", "key": "type", "pattern": "m.room.server_acl"},
            {"kind": "event_match", "key": "state_key", "pattern": ""},
        ],
        [],
    ),
    (
        ".m.rule.suppress_edits",
        True,
        [
            {
                "kind": "event_property_is",
                "key": "content.m\\.relates_to.rel_type",
                "value": "m.replace",
            }
        ],
        [],
    ),
]

_UNDERRIDE: list[tuple[str, bool, list[dict[str, Any]], list[Any]]] = [
    (
        ".m.rule.call",
        True,
        [{"key": "type", "kind": "event_match", "pattern": "m.call.invite"}],
        ["notify", {"set_tweak": "sound", "value": "ring"}],
    ),
    (
        ".m.rule.encrypted_room_one_to_one",
        True,
        [
            {"kind": "room_member_count", "is": "2"},
            {"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"},
        ],
        ["notify", _SOUND_DEFAULT],
    ),
    (
        ".m.rule.room_one_to_one",
        True,
        [
            {"kind": "room_member_count", "is": "2"},
            {"kind": "event_match", "key": "type", "pattern": "m.room.message"},
        ],
        ["notify", _SOUND_DEFAULT],
    ),
    (
        ".m.rule.message",
        True,
        [{"kind": "event_match", "key": "type", "pattern": "m.room.message"}],
        ["notify"],
    ),
    (
        ".m.rule.encrypted",
        True,
        [{"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"}],
        ["notify"],
    ),
]

DEFAULT_RULE_IDS: frozenset[tuple[str, str]] = frozenset(
    [("override", rule_id) for rule_id, *_ in _OVERRIDE]
    + [("underride", rule_id) for rule_id, *_ in _UNDERRIDE]
)


def _for_user(value: Any, user_id: str) -> Any:
    if value == _ME:
        return user_id
    if isinstance(value, dict):
        return {k: _for_user(v, user_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_for_user(v, user_id) for v in value]
    return value


@lru_cache(maxsize=1024)
def default_rules(user_id: str) -> Mapping[str, Sequence[PushRule]]:
    """The server-default rules for ``user_id``, per kind, in priority order.

    The result is shared between callers: never mutate it.
    """
    rules: dict[str, list[PushRule]] = {kind: [] for kind in KINDS}
    for kind, table in (("override", _OVERRIDE), ("underride", _UNDERRIDE)):
        for rule_id, enabled, conditions, actions in table:
            rules[kind].append(
                PushRule(
                    kind=kind,
                    rule_id=rule_id,
                    actions=tuple(_for_user(actions, user_id)),
                    conditions=tuple(_for_user(conditions, user_id)),
                    enabled=enabled,
                    default=True,
                )
            )
    return rules
