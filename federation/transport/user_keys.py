"""Our users' keys for other servers: ``POST /user/keys/query``, ``POST /user/keys/claim``
and ``GET /user/devices/{userId}``.

Only local users are answered for; others are left out. As Synapse does by default
(``allow_device_name_lookup_over_federation: false``), device display names are not
given away, and a user's user-signing key never leaves the server.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from federation.ratelimit import FederationRateLimiter
from federation.transport.auth import add_federation_route
from homeserver.errors import MatrixError, bad_json, invalid_param
from homeserver.handlers.e2e_keys import key_type_public, merge_signatures
from homeserver.types import UserID
from rest.request import HttpRequest
from rest.router import Router
from storage.e2e_keys import E2EKeyStore, SignatureRow
from storage.remote_devices import RemoteDeviceStore

JsonDict = dict[str, Any]


class UserKeysServlet:
    def __init__(
        self, server_name: str, keys: E2EKeyStore, device_lists: RemoteDeviceStore
    ) -> None:
        self.server_name = server_name
        self.keys = keys
        self.device_lists = device_lists

    def is_mine(self, user_id: str) -> bool:
        return user_id.endswith(f":{self.server_name}")

    async def query(self, body: JsonDict) -> JsonDict:
        wanted = body.get("device_keys")
        if not isinstance(wanted, dict):
            raise bad_json("'device_keys' must map user IDs to lists of device IDs")
        query: dict[str, list[str]] = {}
        for user_id, devices in wanted.items():
            if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
                raise bad_json(f"'device_keys.{user_id}' must be a list of device IDs")
            if self.is_mine(user_id):
                query[user_id] = devices
        result: JsonDict = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
        if not query:
            return result
        stored = await self.keys.get_device_keys(query)
        signatures: dict[tuple[str, str], list[SignatureRow]] = defaultdict(list)
        for row in await self.keys.get_signatures(list(query)):
            # Another server sees only the signatures users made on their own keys.
            if row.signer_user_id == row.target_user_id:
                signatures[(row.target_user_id, row.target_key_id)].append(row)
        for user_id in query:
            devices_out: JsonDict = {}
            for device_id, keys in stored.get(user_id, {}).items():
                device = merge_signatures(keys.keys, signatures.get((user_id, device_id), []))
                unsigned = dict(device.get("unsigned") or {})
                unsigned.pop("device_display_name", None)
                if unsigned:
                    device["unsigned"] = unsigned
                else:
                    device.pop("unsigned", None)
                devices_out[device_id] = device
            result["device_keys"][user_id] = devices_out
        for user_id, user_keys in (await self.keys.get_cross_signing_keys(list(query))).items():
            for key_type, field in (
                ("master", "master_keys"),
                ("self_signing", "self_signing_keys"),
            ):
                key = user_keys.get(key_type)
                if key is not None:
                    public = key_type_public(key)
                    result[field][user_id] = merge_signatures(
                        key, signatures.get((user_id, public), [])
                    )
        return result

    async def claim(self, body: JsonDict) -> JsonDict:
        wanted = body.get("one_time_keys")
        if not isinstance(wanted, dict):
            raise bad_json("'one_time_keys' must map user IDs to devices to algorithms")
        local: list[tuple[str, str, str]] = []
        for user_id, devices in wanted.items():
            if not isinstance(devices, dict) or not all(
                isinstance(a, str) for a in devices.values()
            ):
                raise bad_json(f"'one_time_keys.{user_id}' must map device IDs to algorithms")
            if self.is_mine(user_id):
                local.extend((user_id, d, a) for d, a in sorted(devices.items()))
        return {"one_time_keys": await self.keys.claim(local)}

    async def devices(self, user_id: str) -> JsonDict:
        try:
            UserID.parse(user_id)
        except ValueError:
            raise invalid_param(f"Invalid user ID {user_id!r}") from None
        if not self.is_mine(user_id):
            raise MatrixError(400, "M_INVALID_PARAM", "User is not hosted on this server")
        stream_id, devices = await self.device_lists.get_local_device_list(user_id)
        listed: list[JsonDict] = []
        for device_id, key_json in devices:
            device: JsonDict = {"device_id": device_id}
            if key_json is not None:
                device["keys"] = json.loads(key_json)
            listed.append(device)
        answer: JsonDict = {"user_id": user_id, "stream_id": stream_id, "devices": listed}
        cross = (await self.keys.get_cross_signing_keys([user_id])).get(user_id, {})
        if "master" in cross:
            answer["master_key"] = cross["master"]
        if "self_signing" in cross:
            answer["self_signing_key"] = cross["self_signing"]
        return answer


def register(
    router: Router, limiter: FederationRateLimiter | None, servlet: UserKeysServlet
) -> None:
    async def query(request: HttpRequest) -> JsonDict:
        return await servlet.query(request.json())

    async def claim(request: HttpRequest) -> JsonDict:
        return await servlet.claim(request.json())

    async def devices(request: HttpRequest) -> JsonDict:
        return await servlet.devices(request.path_params["userId"])

    add_federation_route(router, limiter, "POST", "/_matrix/federation/v1/user/keys/query", query)
    add_federation_route(router, limiter, "POST", "/_matrix/federation/v1/user/keys/claim", claim)
    add_federation_route(
        router, limiter, "GET", "/_matrix/federation/v1/user/devices/{userId}", devices
    )
