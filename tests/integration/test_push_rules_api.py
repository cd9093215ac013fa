"""The push rules API over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.integration.harness import RunningHomeserver
from tests.integration.rooms_helpers import User, alice, assert_error, bob, quote, server

__all__ = ["alice", "bob", "server"]

RULES = "/pushrules/global"


def ids(user: User, kind: str) -> list[str]:
    rules = user.ok("GET", "/pushrules/")["global"][kind]
    return [r["rule_id"] for r in rules]


def own_ids(user: User, kind: str) -> list[str]:
    return [r for r in ids(user, kind) if not r.startswith(".")]


def put(user: User, kind: str, rule_id: str, body: dict[str, Any], query: str = "") -> Any:
    return user.request("PUT", f"{RULES}/{kind}/{quote(rule_id)}{query}", body)


def test_default_ruleset(alice: User) -> None:
    everything = alice.ok("GET", "/pushrules/")
    ruleset = everything["global"]
    assert set(ruleset) == {"override", "content", "room", "sender", "underride"}
    assert ruleset == alice.ok("GET", f"{RULES}/")
    override_ids = [r["rule_id"] for r in ruleset["override"]]
    assert override_ids[0] == ".m.rule.master"
    assert ".m.rule.is_user_mention" in override_ids
    assert [r["rule_id"] for r in ruleset["underride"]][-1] == ".m.rule.encrypted"
    mention = alice.ok("GET", f"{RULES}/override/.m.rule.is_user_mention")
    assert mention["default"] is True and mention["enabled"] is True
    assert mention["conditions"][0]["value"] == alice.user_id
    assert alice.ok("GET", f"{RULES}/override/.m.rule.master/enabled") == {"enabled": False}
    assert alice.ok("GET", f"{RULES}/underride/.m.rule.message/actions") == {"actions": ["notify"]}
    listed = alice.request("GET", f"{RULES}/underride/")
    assert listed.status == 200
    assert listed.json()[0]["rule_id"] == ".m.rule.call"
    # Also under the legacy r0 prefix.
    r0 = alice.server.request(
        "GET",
        "/_matrix/client/r0/pushrules/",
        headers={"Authorization": f"Bearer {alice.access_token}"},
    )
    assert r0.status == 200 and r0.json() == everything


def test_put_get_delete_rule(alice: User, bob: User) -> None:
    body = {
        "actions": ["notify", {"set_tweak": "sound", "value": "bing"}],
        "conditions": [{"kind": "event_match", "key": "content.body", "pattern": "cake*"}],
    }
    assert put(alice, "override", "cake", body).status == 200
    rule = alice.ok("GET", f"{RULES}/override/cake")
    assert rule == {"rule_id": "cake", "default": False, "enabled": True, **body}
    # A new user rule goes after the master rule and before the other defaults.
    assert ids(alice, "override")[:3] == [".m.rule.master", "cake", ".m.rule.suppress_notices"]
    # Bob does not see Alice's rules.
    assert_error(bob.request("GET", f"{RULES}/override/cake"), 404, "M_NOT_FOUND")

    assert put(alice, "content", "lie", {"pattern": "lie", "actions": []}).status == 200
    assert alice.ok("GET", f"{RULES}/content/lie") == {
        "rule_id": "lie",
        "default": False,
        "enabled": True,
        "pattern": "lie",
        "actions": [],
    }
    room_rule = put(alice, "room", "!room:hs.test", {"actions": ["dont_notify"]})
    assert room_rule.status == 200
    assert alice.ok("GET", f"{RULES}/room/{quote('!room:hs.test')}")["actions"] == ["dont_notify"]
    assert put(alice, "sender", bob.user_id, {"actions": []}).status == 200
    assert own_ids(alice, "sender") == [bob.user_id]

    assert alice.ok("DELETE", f"{RULES}/override/cake") == {}
    assert_error(alice.request("GET", f"{RULES}/override/cake"), 404, "M_NOT_FOUND")
    assert_error(alice.request("DELETE", f"{RULES}/override/cake"), 404, "M_NOT_FOUND")


def test_before_and_after(alice: User) -> None:
    rule = {"actions": ["notify"], "conditions": []}
    for name in ("a", "b", "c"):
        assert put(alice, "underride", name, rule).status == 200
    # Each new rule is the most important of the user's own.
    assert own_ids(alice, "underride") == ["c", "b", "a"]
    assert put(alice, "underride", "d", rule, "?before=a").status == 200
    assert own_ids(alice, "underride") == ["c", "b", "d", "a"]
    assert put(alice, "underride", "e", rule, "?after=c").status == 200
    assert own_ids(alice, "underride") == ["c", "e", "b", "d", "a"]
    # Moving an existing rule.
    assert put(alice, "underride", "c", rule, "?after=a").status == 200
    assert own_ids(alice, "underride") == ["e", "b", "d", "a", "c"]
    # Both given: "before" wins (the rule is the next most important relative to it).
    assert put(alice, "underride", "f", rule, "?before=b&after=c").status == 200
    assert own_ids(alice, "underride") == ["e", "f", "b", "d", "a", "c"]
    # The user rules stay ahead of the server-default underrides.
    assert ids(alice, "underride")[6] == ".m.rule.call"

    missing = put(alice, "underride", "g", rule, "?before=nope")
    assert_error(missing, 400, "M_UNKNOWN")
    # Not relative to a server-default rule, nor to a rule of another kind.
    assert put(alice, "underride", "g", rule, "?after=.m.rule.message").status == 400
    assert put(alice, "override", "g", rule, "?after=a").status == 400
    assert "g" not in own_ids(alice, "underride") + own_ids(alice, "override")


def test_bad_rules(alice: User) -> None:
    ok_body = {"actions": ["notify"], "conditions": []}
    assert_error(put(alice, "override", ".m.rule.mine", ok_body), 400, "M_INVALID_PARAM")
    assert_error(put(alice, "override", ".m.rule.master", ok_body), 400, "M_INVALID_PARAM")
    assert_error(put(alice, "override", "a\\b", ok_body), 400, "M_INVALID_PARAM")
    assert_error(put(alice, "override", "a/b", ok_body), 400, "M_INVALID_PARAM")
    assert_error(put(alice, "override", "x", {"conditions": []}), 400, "M_MISSING_PARAM")
    assert_error(
        put(alice, "override", "x", {"actions": ["explode"], "conditions": []}),
        400,
        "M_INVALID_PARAM",
    )
    assert_error(
        put(alice, "override", "x", {"actions": [], "conditions": [{"kind": "event_match"}]}),
        400,
        "M_INVALID_PARAM",
    )
    assert_error(put(alice, "content", "x", {"actions": []}), 400, "M_MISSING_PARAM")
    assert_error(put(alice, "nonsense", "x", ok_body), 400, "M_UNRECOGNIZED")
    assert_error(alice.request("GET", f"{RULES}/nonsense/x"), 400, "M_UNRECOGNIZED")
    not_json = alice.request("PUT", f"{RULES}/override/x", b"{nope")
    assert_error(not_json, 400, "M_NOT_JSON")
    assert_error(alice.request("GET", f"{RULES}/override/nope"), 404, "M_NOT_FOUND")
    # Server-default rules cannot be deleted.
    assert_error(alice.request("DELETE", f"{RULES}/override/.m.rule.master"), 404, "M_NOT_FOUND")
    assert alice.ok("GET", f"{RULES}/override/.m.rule.master")["default"] is True
    assert_error(
        alice.request("GET", f"{RULES}/override/.m.rule.master/bogus"), 400, "M_UNRECOGNIZED"
    )
    assert own_ids(alice, "override") == []
    # Unauthenticated.
    assert_error(alice.request("GET", "/pushrules/", token=False), 401, "M_MISSING_TOKEN")


def test_enabled_and_actions(alice: User) -> None:
    master = f"{RULES}/override/.m.rule.master"
    assert alice.ok("PUT", f"{master}/enabled", {"enabled": True}) == {}
    assert alice.ok("GET", f"{master}/enabled") == {"enabled": True}
    assert alice.ok("GET", master)["enabled"] is True
    message = f"{RULES}/underride/.m.rule.message"
    assert alice.ok("PUT", f"{message}/actions", {"actions": []}) == {}
    assert alice.ok("GET", f"{message}/actions") == {"actions": []}
    assert alice.ok("GET", message)["default"] is True

    assert put(alice, "override", "mine", {"actions": ["notify"]}).status == 200
    assert alice.ok("PUT", f"{RULES}/override/mine/enabled", {"enabled": False}) == {}
    assert alice.ok("GET", f"{RULES}/override/mine")["enabled"] is False
    # Replacing a rule keeps its enabled flag.
    assert put(alice, "override", "mine", {"actions": []}).status == 200
    assert alice.ok("GET", f"{RULES}/override/mine")["enabled"] is False
    assert alice.ok("PUT", f"{RULES}/override/mine/actions", {"actions": ["notify"]}) == {}
    assert alice.ok("GET", f"{RULES}/override/mine/actions") == {"actions": ["notify"]}

    bad = alice.request("PUT", f"{master}/enabled", {"enabled": "yes"})
    assert_error(bad, 400, "M_INVALID_PARAM")
    bad = alice.request("PUT", f"{message}/actions", {"actions": "notify"})
    assert_error(bad, 400, "M_INVALID_PARAM")
    missing = alice.request("PUT", f"{RULES}/override/nope/enabled", {"enabled": True})
    assert_error(missing, 404, "M_NOT_FOUND")
    missing = alice.request("PUT", f"{RULES}/override/.m.rule.nope/actions", {"actions": []})
    assert_error(missing, 404, "M_NOT_FOUND")
    missing = alice.request("PUT", f"{RULES}/content/.m.rule.master/enabled", {"enabled": True})
    assert_error(missing, 404, "M_NOT_FOUND")


def test_sync_shows_push_rules_and_wakes_on_change(server: RunningHomeserver, alice: User) -> None:
    initial = alice.ok("GET", "/sync")
    account_data = {e["type"]: e["content"] for e in initial["account_data"]["events"]}
    assert account_data["m.push_rules"] == alice.ok("GET", "/pushrules/")
    since = initial["next_batch"]
    quiet = alice.ok("GET", f"/sync?since={quote(since)}&timeout=0")
    assert "m.push_rules" not in [
        e["type"] for e in quiet.get("account_data", {}).get("events", [])
    ]
    assert put(alice, "override", "new", {"actions": []}).status == 200
    # A long timeout: the change is already there, so this answers at once.
    changed = alice.ok("GET", f"/sync?since={quote(since)}&timeout=30000")
    events = {e["type"]: e["content"] for e in changed["account_data"]["events"]}
    assert "new" in [r["rule_id"] for r in events["m.push_rules"]["global"]["override"]]
