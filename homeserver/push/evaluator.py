"""Matching push rule conditions against an event, and reading the actions that result.

Pure and synchronous: everything an evaluation needs about the room (member count,
power levels, the user's display name) is handed in, so it runs per member without I/O.
Spec: client-server-api "Push Rules" (conditions, actions) and appendices "Glob-style
matching" and "Dot-separated property paths".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from homeserver.push.rules import PushRule

# JSON values event_property_is / _contains compare: canonical JSON's integer range.
_MAX_SAFE_INT = 2**53 - 1

_ABSENT = object()

# The spec's word characters; anything else (including non-ASCII) is a word boundary.
_WORD_CHARS = "A-Za-z0-9_"
# A match starts at a boundary when it begins the value, follows a non-word character,
# or itself begins with one (so "@room" matches in "hi@room", as Synapse does).
_LEFT_BOUNDARY = rf"(?:^|(?<=[^{_WORD_CHARS}])|(?=[^{_WORD_CHARS}]))"
_RIGHT_BOUNDARY = rf"(?:$|(?=[^{_WORD_CHARS}])|(?<=[^{_WORD_CHARS}]))"

_MEMBER_COUNT_RE = re.compile(r"^(==|<=|>=|<|>)?([0-9]+)$")

# Default power levels the notification condition falls back to (spec m.room.power_levels).
DEFAULT_NOTIFICATION_LEVEL = 50


@lru_cache(maxsize=4096)
def split_dotted_key(key: str) -> tuple[str, ...]:
    """The property names of a dot-separated path: ``\\.`` is a literal dot, ``\\\\``
    a literal backslash, and any other ``\\x`` stays as written."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(key):
        char = key[i]
        if char == "\\" and i + 1 < len(key) and key[i + 1] in ".\\":
            current.append(key[i + 1])
            i += 2
            continue
        if char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return tuple(parts)


def lookup_property(event: Mapping[str, Any], key: str) -> Any:
    """The value at the dotted ``key`` of ``event``, or ``_ABSENT``."""
    value: Any = event
    for name in split_dotted_key(key):
        if not isinstance(value, Mapping) or name not in value:
            return _ABSENT
        value = value[name]
    return value


def _glob_body(pattern: str) -> str:
    # Consecutive stars mean the same as one; collapsing them keeps the regex linear.
    pattern = re.sub(r"\*+", "*", pattern)
    return "".join(".*?" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


@lru_cache(maxsize=4096)
def glob_matcher(pattern: str, word_boundary: bool) -> re.Pattern[str]:
    """A case-insensitive regex for a glob: whole-value, or (``word_boundary``) any
    substring that starts and ends at a word boundary."""
    body = _glob_body(pattern)
    if word_boundary:
        return re.compile(_LEFT_BOUNDARY + body + _RIGHT_BOUNDARY, re.IGNORECASE | re.DOTALL)
    return re.compile(r"\A" + body + r"\Z", re.IGNORECASE | re.DOTALL)


@lru_cache(maxsize=4096)
def literal_word_matcher(text: str) -> re.Pattern[str]:
    """A case-insensitive regex finding ``text`` itself between word boundaries."""
    return re.compile(_LEFT_BOUNDARY + re.escape(text) + _RIGHT_BOUNDARY, re.IGNORECASE | re.DOTALL)


def glob_matches(pattern: str, value: str, *, word_boundary: bool = False) -> bool:
    return glob_matcher(pattern, word_boundary).search(value) is not None


def _is_simple_value(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT


def _same_value(a: Any, b: Any) -> bool:
    # Types are compared too: JSON true is not 1, and "1" is not 1.
    return type(a) is type(b) and a == b


@dataclass
class PushContext:
    """What an evaluation knows about the event and its room (shared by all members)."""

    # The event as a JSON object (the PDU fields, with event_id), looked up by dotted key.
    event: Mapping[str, Any]
    # Joined members of the room.
    room_member_count: int
    # The sender's power level and the room's ``notifications`` levels.
    sender_power_level: int
    notification_levels: Mapping[str, int] = field(default_factory=dict)

    @property
    def body(self) -> Any:
        content = self.event.get("content")
        return content.get("body") if isinstance(content, Mapping) else None


def condition_matches(
    condition: Mapping[str, Any],
    context: PushContext,
    *,
    user_id: str,
    display_name: str | None,
) -> bool:
    """Whether one condition holds; an unknown or malformed condition never does."""
    kind = condition.get("kind")
    if kind == "event_match":
        key = condition.get("key")
        pattern = condition.get("pattern")
        if not isinstance(key, str) or not isinstance(pattern, str):
            return False
        value = lookup_property(context.event, key)
        if not isinstance(value, str):
            return False
        return glob_matches(pattern, value, word_boundary=key == "content.body")
    if kind == "event_property_is":
        key = condition.get("key")
        if not isinstance(key, str) or "value" not in condition:
            return False
        expected = condition["value"]
        value = lookup_property(context.event, key)
        if value is _ABSENT or not _is_simple_value(value):
            return False
        return _same_value(value, expected)
    if kind == "event_property_contains":
        key = condition.get("key")
        if not isinstance(key, str) or "value" not in condition:
            return False
        expected = condition["value"]
        value = lookup_property(context.event, key)
        if not isinstance(value, list):
            return False
        return any(_is_simple_value(item) and _same_value(item, expected) for item in value)
    if kind == "contains_display_name":
        body = context.body
        if not display_name or not isinstance(body, str):
            return False
        # The display name is matched literally: a name like "*" must not match everything.
        return literal_word_matcher(display_name).search(body) is not None
    if kind == "room_member_count":
        spec = condition.get("is")
        if not isinstance(spec, str):
            return False
        return member_count_matches(spec, context.room_member_count)
    if kind == "sender_notification_permission":
        key = condition.get("key")
        if not isinstance(key, str):
            return False
        required = context.notification_levels.get(key, DEFAULT_NOTIFICATION_LEVEL)
        return context.sender_power_level >= required
    return False


def member_count_matches(spec: str, count: int) -> bool:
    match = _MEMBER_COUNT_RE.match(spec)
    if match is None:
        return False
    op, number = match[1] or "==", int(match[2])
    if op == "==":
        return count == number
    if op == "<":
        return count < number
    if op == ">":
        return count > number
    if op == "<=":
        return count <= number
    return count >= number


def rule_matches(
    rule: PushRule,
    context: PushContext,
    *,
    user_id: str,
    display_name: str | None,
) -> bool:
    if not rule.enabled:
        return False
    if rule.kind == "room":
        return context.event.get("room_id") == rule.rule_id
    if rule.kind == "sender":
        return context.event.get("sender") == rule.rule_id
    if rule.kind == "content":
        body = context.body
        if rule.pattern is None or not isinstance(body, str):
            return False
        return glob_matches(rule.pattern, body, word_boundary=True)
    return all(
        condition_matches(c, context, user_id=user_id, display_name=display_name)
        for c in rule.conditions
    )


def evaluate(
    rules: Sequence[PushRule],
    context: PushContext,
    *,
    user_id: str,
    display_name: str | None = None,
) -> list[Any]:
    """The actions of the first matching rule in priority order (legacy actions
    stripped), or [] if none matches."""
    for rule in rules:
        if rule_matches(rule, context, user_id=user_id, display_name=display_name):
            return strip_legacy_actions(rule.actions)
    return []


def strip_legacy_actions(actions: Sequence[Any]) -> list[Any]:
    """``dont_notify`` and ``coalesce`` are historical and mean nothing (spec)."""
    return [a for a in actions if a not in ("dont_notify", "coalesce")]


@dataclass(frozen=True)
class Notification:
    notify: bool
    highlight: bool


def read_actions(actions: Sequence[Any]) -> Notification:
    """Whether ``actions`` notify, and whether they highlight (a ``highlight`` tweak with
    no value means true)."""
    notify = False
    highlight = False
    for action in actions:
        if action == "notify":
            notify = True
        elif isinstance(action, Mapping) and action.get("set_tweak") == "highlight":
            highlight = action.get("value", True) is True
    return Notification(notify, highlight)
