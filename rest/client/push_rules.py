"""The push rules API: ``/pushrules/`` and ``/pushrules/global/{kind}/{ruleId}`` (+ attributes)."""

from __future__ import annotations

from typing import Any

from homeserver.errors import MatrixError
from homeserver.handlers.push_rules import PushRulesHandler
from homeserver.push.rules import check_kind
from rest.request import HttpRequest, Response, json_response
from rest.router import Auth, Router, client_patterns


def register(router: Router, push_rules: PushRulesHandler) -> None:
    def rule_path(request: HttpRequest) -> tuple[str, str, str]:
        return (
            request.requester.user_id,
            request.path_params["kind"],
            request.path_params["ruleId"],
        )

    async def get_all(request: HttpRequest) -> dict[str, Any]:
        return await push_rules.get_push_rules_for_user(request.requester.user_id)

    async def get_global(request: HttpRequest) -> dict[str, Any]:
        ruleset = await push_rules.get_ruleset(request.requester.user_id)
        return ruleset.to_json()

    async def get_kind(request: HttpRequest) -> Response:
        kind = request.path_params["kind"]
        check_kind(kind)
        ruleset = await push_rules.get_ruleset(request.requester.user_id)
        return json_response([rule.to_json() for rule in ruleset.by_kind[kind]])

    async def get_rule(request: HttpRequest) -> dict[str, Any]:
        return await push_rules.get_rule(*rule_path(request))

    async def put_rule(request: HttpRequest) -> dict[str, Any]:
        body = request.json()
        await push_rules.put_rule(
            *rule_path(request),
            body,
            before=request.query_string("before") or None,
            after=request.query_string("after") or None,
        )
        return {}

    async def delete_rule(request: HttpRequest) -> dict[str, Any]:
        await push_rules.delete_rule(*rule_path(request))
        return {}

    async def get_attribute(request: HttpRequest) -> dict[str, Any]:
        attribute = request.path_params["attr"]
        if attribute == "enabled":
            return {"enabled": await push_rules.get_enabled(*rule_path(request))}
        if attribute == "actions":
            return {"actions": await push_rules.get_actions(*rule_path(request))}
        raise MatrixError(400, "M_UNRECOGNIZED", f"Unknown push rule attribute {attribute!r}")

    async def put_attribute(request: HttpRequest) -> dict[str, Any]:
        attribute = request.path_params["attr"]
        if attribute == "enabled":
            await push_rules.set_enabled(*rule_path(request), request.json())
        elif attribute == "actions":
            await push_rules.set_actions(*rule_path(request), request.json())
        else:
            raise MatrixError(400, "M_UNRECOGNIZED", f"Unknown push rule attribute {attribute!r}")
        return {}

    router.add("GET", client_patterns("/pushrules/"), get_all, auth=Auth.USER)
    router.add("GET", client_patterns("/pushrules/global/"), get_global, auth=Auth.USER)
    router.add("GET", client_patterns("/pushrules/global/{kind}/"), get_kind, auth=Auth.USER)
    rule = client_patterns("/pushrules/global/{kind}/{ruleId}")
    router.add("GET", rule, get_rule, auth=Auth.USER)
    router.add("PUT", rule, put_rule, auth=Auth.USER)
    router.add("DELETE", rule, delete_rule, auth=Auth.USER)
    attr = client_patterns("/pushrules/global/{kind}/{ruleId}/{attr}")
    router.add("GET", attr, get_attribute, auth=Auth.USER)
    router.add("PUT", attr, put_attribute, auth=Auth.USER)
