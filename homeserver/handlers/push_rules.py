"""The push rules API and the rulesets the notification counter evaluates.

Each user's merged ruleset is cached and dropped by the writer after every change, so
the per-event evaluation reads rules from memory for members whose rules did not move.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.errors import MatrixError, not_found
from homeserver.notifier import Notifier
from homeserver.push.default_rules import DEFAULT_RULE_IDS, default_rules
from homeserver.push.rules import (
    Ruleset,
    build_ruleset,
    check_actions,
    check_kind,
    parse_new_rule,
)
from homeserver.streams import StreamToken
from homeserver.util.caches import LruCache
from homeserver.util.linearizer import Linearizer
from storage.push_rules import PushRuleStore, RuleNotFoundError

PUSH_RULES_STREAM = "push_rules"


def _rule_not_found() -> MatrixError:
    return not_found("The push rule was not found.")


class PushRulesHandler:
    def __init__(self, store: PushRuleStore, notifier: Notifier) -> None:
        self.store = store
        self._notifier = notifier
        self._rulesets: LruCache[str, Ruleset] = LruCache(50_000)
        # Bumped by every change: a read that overlapped one must not fill the cache,
        # or it could put back the ruleset the change just dropped.
        self._changes = 0
        # One change per user at a time: priorities are read and rewritten together.
        self._locks = Linearizer()

    # --- for /sync and the evaluator --------------------------------------------------

    name = PUSH_RULES_STREAM

    def current_position(self) -> int:
        """The "push_rules" stream position every reader may read up to."""
        return self.store.current_position()

    async def get_push_rules_for_user(self, user_id: str) -> dict[str, Any]:
        """The content of the user's ``m.push_rules`` account data: ``{"global": ruleset}``."""
        return {"global": (await self.get_ruleset(user_id)).to_json()}

    async def push_rules_changed_since(self, user_id: str, position: int) -> bool:
        if position >= self.current_position():
            return False
        return await self.store.get_user_position(user_id) > position

    async def sync_account_data(
        self, user_id: str, since: StreamToken | None
    ) -> list[dict[str, Any]]:
        """/sync's global account data provider: ``m.push_rules`` on an initial sync, and
        on an incremental one when the user's rules changed since the token."""
        if since is not None:
            position = dict(since.extra).get(PUSH_RULES_STREAM, 0)
            if not await self.push_rules_changed_since(user_id, position):
                return []
        return [{"type": "m.push_rules", "content": await self.get_push_rules_for_user(user_id)}]

    async def get_ruleset(self, user_id: str) -> Ruleset:
        return (await self.get_rulesets([user_id]))[user_id]

    async def get_rulesets(self, user_ids: Sequence[str]) -> dict[str, Ruleset]:
        """Many users' rulesets; one query for those not cached."""
        found: dict[str, Ruleset] = {}
        missing: list[str] = []
        for user_id in user_ids:
            cached = self._rulesets.get(user_id)
            if cached is not None:
                found[user_id] = cached
            else:
                missing.append(user_id)
        if missing:
            changes_before = self._changes
            stored = await self.store.get_rules(missing)
            for user_id in missing:
                own, changes = stored[user_id]
                ruleset = build_ruleset(default_rules(user_id), own, changes)
                if self._changes == changes_before:
                    self._rulesets.set(user_id, ruleset)
                found[user_id] = ruleset
        return found

    # --- the client API ---------------------------------------------------------------

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> dict[str, Any]:
        check_kind(kind)
        rule = (await self.get_ruleset(user_id)).find(kind, rule_id)
        if rule is None:
            raise _rule_not_found()
        return rule.to_json()

    async def put_rule(
        self,
        user_id: str,
        kind: str,
        rule_id: str,
        body: dict[str, Any],
        *,
        before: str | None,
        after: str | None,
    ) -> None:
        new_rule = parse_new_rule(kind, rule_id, body)
        async with self._locks.lock(user_id):
            try:
                position = await self.store.add_rule(
                    user_id,
                    kind,
                    rule_id,
                    conditions=new_rule.conditions,
                    pattern=new_rule.pattern,
                    actions=new_rule.actions,
                    before=before,
                    after=after,
                )
            except RuleNotFoundError as e:
                # The spec's own example answers an unknown before/after with M_UNKNOWN.
                raise MatrixError(400, "M_UNKNOWN", str(e)) from None
            self._changed(user_id, position)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        check_kind(kind)
        async with self._locks.lock(user_id):
            try:
                position = await self.store.delete_rule(user_id, kind, rule_id)
            except RuleNotFoundError:
                # Server-default rules are not stored per user, so they are "not found"
                # here too, as in Synapse.
                raise _rule_not_found() from None
            self._changed(user_id, position)

    async def get_enabled(self, user_id: str, kind: str, rule_id: str) -> bool:
        check_kind(kind)
        rule = (await self.get_ruleset(user_id)).find(kind, rule_id)
        if rule is None:
            raise _rule_not_found()
        return rule.enabled

    async def get_actions(self, user_id: str, kind: str, rule_id: str) -> list[Any]:
        check_kind(kind)
        rule = (await self.get_ruleset(user_id)).find(kind, rule_id)
        if rule is None:
            raise _rule_not_found()
        return list(rule.actions)

    async def set_enabled(self, user_id: str, kind: str, rule_id: str, body: Any) -> None:
        check_kind(kind)
        enabled = body.get("enabled") if isinstance(body, dict) else None
        if not isinstance(enabled, bool):
            raise MatrixError(400, "M_INVALID_PARAM", "'enabled' must be a boolean")
        await self._set(user_id, kind, rule_id, "enabled", enabled)

    async def set_actions(self, user_id: str, kind: str, rule_id: str, body: Any) -> None:
        check_kind(kind)
        if not isinstance(body, dict) or "actions" not in body:
            raise MatrixError(400, "M_MISSING_PARAM", "'actions' is required")
        actions = check_actions(body["actions"])
        await self._set(user_id, kind, rule_id, "actions", actions)

    async def _set(self, user_id: str, kind: str, rule_id: str, what: str, value: Any) -> None:
        is_default = rule_id.startswith(".")
        if is_default and (kind, rule_id) not in DEFAULT_RULE_IDS:
            raise _rule_not_found()
        async with self._locks.lock(user_id):
            try:
                if what == "enabled":
                    position = await self.store.set_enabled(
                        user_id, kind, rule_id, value, is_default=is_default
                    )
                else:
                    position = await self.store.set_actions(
                        user_id, kind, rule_id, value, is_default=is_default
                    )
            except RuleNotFoundError:
                raise _rule_not_found() from None
            self._changed(user_id, position)

    def _changed(self, user_id: str, position: int) -> None:
        self._changes += 1
        self._rulesets.pop(user_id)
        self._notifier.notify(PUSH_RULES_STREAM, position, users=[user_id])
