"""A user's push ruleset: the rule model, its client JSON, and validation of client input.

The ruleset a user sees (and the order rules are evaluated in) is the server-default
rules merged with the user's own: ``.m.rule.master`` first, then the user's rules of each
kind before the server-default rules of that kind (spec "Predefined Rules").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from homeserver.errors import MatrixError

# In evaluation order.
KINDS: tuple[str, ...] = ("override", "content", "room", "sender", "underride")

MASTER_RULE_ID = ".m.rule.master"

_MAX_SAFE_INT = 2**53 - 1


@dataclass(frozen=True, eq=False)
class PushRule:
    kind: str
    rule_id: str
    actions: Sequence[Any]
    conditions: Sequence[Mapping[str, Any]] = ()
    pattern: str | None = None
    enabled: bool = True
    default: bool = False

    def to_json(self) -> dict[str, Any]:
        rule: dict[str, Any] = {
            "rule_id": self.rule_id,
            "default": self.default,
            "enabled": self.enabled,
            "actions": list(self.actions),
        }
        if self.kind in ("override", "underride"):
            rule["conditions"] = [dict(c) for c in self.conditions]
        elif self.kind == "content" and self.pattern is not None:
            rule["pattern"] = self.pattern
        return rule


@dataclass(frozen=True)
class UserRule:
    """A rule the user created, as stored."""

    kind: str
    rule_id: str
    # Higher is more important within the kind.
    priority: int
    conditions: Sequence[Mapping[str, Any]]
    pattern: str | None
    actions: Sequence[Any]
    enabled: bool


@dataclass(frozen=True)
class DefaultRuleChange:
    """The user's changes to one server-default rule; None leaves the default."""

    enabled: bool | None = None
    actions: Sequence[Any] | None = None


@dataclass(frozen=True)
class Ruleset:
    """Every rule of a user, per kind, in priority order."""

    by_kind: Mapping[str, Sequence[PushRule]]
    # All rules in evaluation order.
    ordered: Sequence[PushRule] = field(default=())
    # Whether an enabled rule needs the user's display name (``contains_display_name``),
    # so the evaluator fetches display names only for the users who need them.
    uses_display_name: bool = False

    def find(self, kind: str, rule_id: str) -> PushRule | None:
        for rule in self.by_kind.get(kind, ()):
            if rule.rule_id == rule_id:
                return rule
        return None

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        return {kind: [rule.to_json() for rule in self.by_kind[kind]] for kind in KINDS}


def build_ruleset(
    defaults: Mapping[str, Sequence[PushRule]],
    user_rules: Sequence[UserRule],
    changes: Mapping[tuple[str, str], DefaultRuleChange],
) -> Ruleset:
    """Merge the server-default rules (with the user's changes to them) and the user's own."""
    own: dict[str, list[UserRule]] = {kind: [] for kind in KINDS}
    for user_rule in user_rules:
        if user_rule.kind in own:
            own[user_rule.kind].append(user_rule)
    by_kind: dict[str, list[PushRule]] = {}
    for kind in KINDS:
        merged_defaults = [
            _apply_change(rule, changes.get((kind, rule.rule_id)))
            for rule in defaults.get(kind, ())
        ]
        mine = [
            PushRule(
                kind=kind,
                rule_id=r.rule_id,
                actions=r.actions,
                conditions=r.conditions,
                pattern=r.pattern,
                enabled=r.enabled,
            )
            for r in sorted(own[kind], key=lambda r: -r.priority)
        ]
        if kind == "override":
            master = [r for r in merged_defaults if r.rule_id == MASTER_RULE_ID]
            rest = [r for r in merged_defaults if r.rule_id != MASTER_RULE_ID]
            by_kind[kind] = master + mine + rest
        else:
            by_kind[kind] = mine + merged_defaults
    ordered = [rule for kind in KINDS for rule in by_kind[kind]]
    uses_display_name = any(
        rule.enabled and any(c.get("kind") == "contains_display_name" for c in rule.conditions)
        for rule in ordered
    )
    return Ruleset(by_kind=by_kind, ordered=ordered, uses_display_name=uses_display_name)


def _apply_change(rule: PushRule, change: DefaultRuleChange | None) -> PushRule:
    if change is None:
        return rule
    return PushRule(
        kind=rule.kind,
        rule_id=rule.rule_id,
        actions=rule.actions if change.actions is None else change.actions,
        conditions=rule.conditions,
        pattern=rule.pattern,
        enabled=rule.enabled if change.enabled is None else change.enabled,
        default=True,
    )


# --- validating what clients send ------------------------------------------------------


def _invalid(error: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", error)


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise MatrixError(400, "M_UNRECOGNIZED", f"Unknown push rule kind {kind!r}")


def check_new_rule_id(rule_id: str) -> None:
    if rule_id.startswith("."):
        raise _invalid("cannot add new rule_ids that start with '.'")
    if "/" in rule_id or "\\" in rule_id:
        raise _invalid("rule_id may not contain slashes")
    if not rule_id:
        raise _invalid("rule_id may not be empty")


def check_actions(actions: Any) -> list[Any]:
    if not isinstance(actions, list):
        raise _invalid("'actions' must be a list")
    for action in actions:
        if action in ("notify", "dont_notify", "coalesce"):
            continue
        if isinstance(action, dict) and isinstance(action.get("set_tweak"), str):
            continue
        raise _invalid(f"Unrecognised action {action!r}")
    return actions


def _is_simple_value(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT


def check_conditions(conditions: Any) -> list[dict[str, Any]]:
    """Conditions of a known kind must carry their parameters; unknown kinds are kept
    (the spec says they never match, which makes the rule inert, not invalid)."""
    if not isinstance(conditions, list):
        raise _invalid("'conditions' must be a list")
    for condition in conditions:
        if not isinstance(condition, dict) or not isinstance(condition.get("kind"), str):
            raise _invalid("each condition must be an object with a string 'kind'")
        kind = condition["kind"]
        if kind == "event_match":
            if not isinstance(condition.get("key"), str):
                raise _invalid("event_match needs a string 'key'")
            if not isinstance(condition.get("pattern"), str):
                raise _invalid("event_match needs a string 'pattern'")
        elif kind in ("event_property_is", "event_property_contains"):
            if not isinstance(condition.get("key"), str):
                raise _invalid(f"{kind} needs a string 'key'")
            if "value" not in condition or not _is_simple_value(condition["value"]):
                raise _invalid(f"{kind} needs a string, integer, boolean or null 'value'")
        elif kind == "room_member_count":
            if not isinstance(condition.get("is"), str):
                raise _invalid("room_member_count needs a string 'is'")
        elif kind == "sender_notification_permission":
            if not isinstance(condition.get("key"), str):
                raise _invalid("sender_notification_permission needs a string 'key'")
    return conditions


@dataclass(frozen=True)
class NewRule:
    conditions: list[dict[str, Any]]
    pattern: str | None
    actions: list[Any]


def parse_new_rule(kind: str, rule_id: str, body: Mapping[str, Any]) -> NewRule:
    """The rule a PUT describes, or 400."""
    check_kind(kind)
    check_new_rule_id(rule_id)
    if "actions" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "No actions found")
    actions = check_actions(body["actions"])
    conditions: list[dict[str, Any]] = []
    pattern: str | None = None
    if kind in ("override", "underride"):
        conditions = check_conditions(body.get("conditions", []))
    elif kind == "content":
        pattern = body.get("pattern")
        if not isinstance(pattern, str):
            raise MatrixError(400, "M_MISSING_PARAM", "Content rule missing 'pattern'")
    return NewRule(conditions=conditions, pattern=pattern, actions=actions)
