"""Push rules as stored: each user's own rules, their changes to the server-default rules,
and the "push_rules" stream position of each user's latest change.

Every change is one transaction that also moves the user's stream position, so /sync
sees a rule change and its position together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from homeserver.push.rules import DefaultRuleChange, UserRule
from storage.engine import Cursor, Database
from storage.stream_ids import StreamIdGenerator

_CHUNK = 500


class RuleNotFoundError(Exception):
    """The rule (or the rule a new one is placed relative to) does not exist."""


class PushRuleStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.stream_ids = StreamIdGenerator(0)

    async def load_positions(self) -> None:
        rows = await self.db.execute(
            "push_rules_max_stream", "SELECT COALESCE(MAX(stream_id), 0) FROM push_rules_stream"
        )
        self.stream_ids = StreamIdGenerator(int(rows[0][0]) if rows else 0)

    def current_position(self) -> int:
        return self.stream_ids.current_token()

    # --- reading ----------------------------------------------------------------------

    async def get_rules(
        self, user_ids: Sequence[str]
    ) -> dict[str, tuple[list[UserRule], dict[tuple[str, str], DefaultRuleChange]]]:
        """Each user's own rules and default-rule changes, for many users at once."""
        return await self.db.run_interaction("get_push_rules", _get_rules, list(user_ids))

    async def get_user_position(self, user_id: str) -> int:
        """The stream position of the user's latest change (0 if never changed)."""
        rows = await self.db.execute(
            "get_push_rules_position",
            "SELECT stream_id FROM push_rules_stream WHERE user_id = ?",
            user_id,
        )
        return int(rows[0][0]) if rows else 0

    # --- writing ----------------------------------------------------------------------

    async def add_rule(
        self,
        user_id: str,
        kind: str,
        rule_id: str,
        *,
        conditions: list[dict[str, Any]],
        pattern: str | None,
        actions: list[Any],
        before: str | None,
        after: str | None,
    ) -> int:
        """Create or replace a user rule, placed first among the user's rules of its
        kind, or just before ``before`` / just after ``after``. Its stream position."""
        return await self._write(
            "add_push_rule",
            _add_rule,
            user_id,
            kind,
            rule_id,
            json.dumps(conditions),
            pattern,
            json.dumps(actions),
            before,
            after,
        )

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> int:
        return await self._write("delete_push_rule", _delete_rule, user_id, kind, rule_id)

    async def set_enabled(
        self, user_id: str, kind: str, rule_id: str, enabled: bool, *, is_default: bool
    ) -> int:
        return await self._write(
            "set_push_rule_enabled",
            _set_attribute,
            user_id,
            kind,
            rule_id,
            "enabled",
            enabled,
            is_default,
        )

    async def set_actions(
        self, user_id: str, kind: str, rule_id: str, actions: list[Any], *, is_default: bool
    ) -> int:
        return await self._write(
            "set_push_rule_actions",
            _set_attribute,
            user_id,
            kind,
            rule_id,
            "actions",
            json.dumps(actions),
            is_default,
        )

    async def _write(self, desc: str, func: Any, user_id: str, *args: Any) -> int:
        [position] = self.stream_ids.allocate(1)
        try:
            await self.db.run_interaction(desc, _in_stream(func), position, user_id, *args)
        finally:
            self.stream_ids.finished([position])
        return position


def _in_stream(func: Any) -> Any:
    def run(cursor: Cursor, position: int, user_id: str, *args: Any) -> None:
        func(cursor, user_id, *args)
        cursor.execute(
            "INSERT INTO push_rules_stream (user_id, stream_id) VALUES (?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id",
            (user_id, position),
        )

    return run


def _get_rules(
    cursor: Cursor, user_ids: list[str]
) -> dict[str, tuple[list[UserRule], dict[tuple[str, str], DefaultRuleChange]]]:
    result: dict[str, tuple[list[UserRule], dict[tuple[str, str], DefaultRuleChange]]] = {
        user_id: ([], {}) for user_id in user_ids
    }
    for start in range(0, len(user_ids), _CHUNK):
        chunk = user_ids[start : start + _CHUNK]
        placeholders = ",".join("?" * len(chunk))
        cursor.execute(
            "SELECT user_id, kind, rule_id, priority, conditions, pattern, actions, enabled"
            f" FROM push_rules WHERE user_id IN ({placeholders})",
            chunk,
        )
        for user_id, kind, rule_id, priority, conditions, pattern, actions, enabled in cursor:
            result[user_id][0].append(
                UserRule(
                    kind=kind,
                    rule_id=rule_id,
                    priority=int(priority),
                    conditions=json.loads(conditions),
                    pattern=pattern,
                    actions=json.loads(actions),
                    enabled=bool(enabled),
                )
            )
        cursor.execute(
            "SELECT user_id, kind, rule_id, enabled, actions FROM push_rule_default_changes"
            f" WHERE user_id IN ({placeholders})",
            chunk,
        )
        for user_id, kind, rule_id, enabled, actions in cursor:
            result[user_id][1][(kind, rule_id)] = DefaultRuleChange(
                enabled=None if enabled is None else bool(enabled),
                actions=None if actions is None else json.loads(actions),
            )
    return result


def _add_rule(
    cursor: Cursor,
    user_id: str,
    kind: str,
    rule_id: str,
    conditions: str,
    pattern: str | None,
    actions: str,
    before: str | None,
    after: str | None,
) -> None:
    relative = before or after
    if relative:
        cursor.execute(
            "SELECT priority FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id = ?",
            (user_id, kind, relative),
        )
        row = cursor.fetchone()
        if row is None:
            raise RuleNotFoundError(f"before/after rule not found: {relative}")
        # "before" X: the next more important rule than X; "after" X: the next less.
        priority = int(row[0]) + 1 if before else int(row[0])
        cursor.execute(
            "UPDATE push_rules SET priority = priority + 1"
            " WHERE user_id = ? AND kind = ? AND priority >= ? AND rule_id <> ?",
            (user_id, kind, priority, rule_id),
        )
    else:
        cursor.execute(
            "SELECT MAX(priority) FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id <> ?",
            (user_id, kind, rule_id),
        )
        row = cursor.fetchone()
        priority = 0 if row is None or row[0] is None else int(row[0]) + 1
    # A replaced rule keeps its enabled flag; a new one starts enabled (spec).
    cursor.execute(
        "INSERT INTO push_rules"
        " (user_id, kind, rule_id, priority, conditions, pattern, actions, enabled)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, TRUE)"
        " ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET priority = excluded.priority,"
        " conditions = excluded.conditions, pattern = excluded.pattern,"
        " actions = excluded.actions",
        (user_id, kind, rule_id, priority, conditions, pattern, actions),
    )


def _delete_rule(cursor: Cursor, user_id: str, kind: str, rule_id: str) -> None:
    cursor.execute(
        "DELETE FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id = ?",
        (user_id, kind, rule_id),
    )
    if cursor.rowcount == 0:
        raise RuleNotFoundError(rule_id)


def _set_attribute(
    cursor: Cursor,
    user_id: str,
    kind: str,
    rule_id: str,
    column: str,
    value: Any,
    is_default: bool,
) -> None:
    assert column in ("enabled", "actions")
    if is_default:
        cursor.execute(
            f"INSERT INTO push_rule_default_changes (user_id, kind, rule_id, {column})"
            " VALUES (?, ?, ?, ?)"
            f" ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET {column} = excluded.{column}",
            (user_id, kind, rule_id, value),
        )
        return
    cursor.execute(
        f"UPDATE push_rules SET {column} = ? WHERE user_id = ? AND kind = ? AND rule_id = ?",
        (value, user_id, kind, rule_id),
    )
    if cursor.rowcount == 0:
        raise RuleNotFoundError(rule_id)
