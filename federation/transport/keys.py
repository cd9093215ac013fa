"""This server as a notary: ``GET /_matrix/key/v2/query/{serverName}`` and
``POST /_matrix/key/v2/query`` (other servers' keys, signed by us as well)."""

from __future__ import annotations

from typing import Any

from federation.keyring import Keyring
from homeserver.errors import MatrixError, bad_json
from homeserver.events.validation import is_valid_server_name
from rest.request import HttpRequest
from rest.router import Router

# One query may not make us fetch from an unbounded number of servers.
MAX_SERVERS_PER_QUERY = 100


def _criteria(server_name: str, entry: Any) -> dict[str, int]:
    if not isinstance(entry, dict):
        raise bad_json(f"server_keys.{server_name} must be an object")
    wanted: dict[str, int] = {}
    for key_id, criteria in entry.items():
        if criteria is None:
            criteria = {}
        if not isinstance(criteria, dict):
            raise bad_json(f"server_keys.{server_name}.{key_id} must be an object")
        minimum = criteria.get("minimum_valid_until_ts", 0)
        if not isinstance(minimum, int) or isinstance(minimum, bool):
            raise bad_json("minimum_valid_until_ts must be an integer")
        wanted[key_id] = minimum
    return wanted


def register(router: Router, keyring: Keyring) -> None:
    async def query_one(request: HttpRequest) -> dict[str, Any]:
        server_name = request.path_params["serverName"]
        if not is_valid_server_name(server_name):
            raise MatrixError(400, "M_INVALID_PARAM", f"{server_name!r} is not a server name")
        minimum = request.query_int("minimum_valid_until_ts", 0) or 0
        # The {keyId} form is deprecated; as Synapse, it narrows the answer to that key.
        key_id = request.path_params.get("keyId")
        wanted = {key_id: minimum} if key_id else {}
        keys = await keyring.notary_query({server_name: wanted}, minimum_valid_until_ts=minimum)
        return {"server_keys": keys}

    async def query_many(request: HttpRequest) -> dict[str, Any]:
        body = request.json()
        server_keys = body.get("server_keys")
        if not isinstance(server_keys, dict):
            raise bad_json("server_keys must be an object")
        if len(server_keys) > MAX_SERVERS_PER_QUERY:
            raise MatrixError(
                400, "M_TOO_LARGE", f"at most {MAX_SERVERS_PER_QUERY} servers per query"
            )
        query = {}
        for server_name, entry in server_keys.items():
            if not is_valid_server_name(server_name):
                continue  # nothing to say about a name no server can have
            query[server_name] = _criteria(server_name, entry)
        return {"server_keys": await keyring.notary_query(query)}

    router.add(
        "GET",
        ["/_matrix/key/v2/query/{serverName}", "/_matrix/key/v2/query/{serverName}/{keyId}"],
        query_one,
    )
    router.add("POST", "/_matrix/key/v2/query", query_many)
