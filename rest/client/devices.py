"""``/devices``, ``/devices/{deviceId}`` and ``/delete_devices``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.devices import DeviceHandler
from rest.client.register import uia_uri
from rest.errors import MatrixError, missing_param
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, devices: DeviceHandler) -> None:
    async def list_devices(request: HttpRequest) -> dict[str, Any]:
        return {"devices": await devices.get_devices(request.requester)}

    async def get_device(request: HttpRequest) -> dict[str, Any]:
        return await devices.get_device(request.requester, request.path_params["deviceId"])

    async def put_device(request: HttpRequest) -> dict[str, Any]:
        await devices.update_device(
            request.requester, request.path_params["deviceId"], request.json()
        )
        return {}

    async def delete_device(request: HttpRequest) -> dict[str, Any]:
        # The body is optional until the server asks for auth.
        body = request.json() if request.body.strip() else {}
        await devices.delete_devices_with_auth(
            request.requester,
            [request.path_params["deviceId"]],
            body,
            method=request.method,
            uri=uia_uri(request),
        )
        return {}

    async def delete_devices(request: HttpRequest) -> dict[str, Any]:
        body = request.json()
        device_ids = body.get("devices")
        if device_ids is None:
            raise missing_param("Missing 'devices'")
        if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
            raise MatrixError(400, "M_INVALID_PARAM", "'devices' must be a list of strings")
        await devices.delete_devices_with_auth(
            request.requester, device_ids, body, method=request.method, uri=uia_uri(request)
        )
        return {}

    router.add("GET", client_patterns("/devices"), list_devices, auth=Auth.USER)
    router.add("GET", client_patterns("/devices/{deviceId}"), get_device, auth=Auth.USER)
    router.add("PUT", client_patterns("/devices/{deviceId}"), put_device, auth=Auth.USER)
    router.add("DELETE", client_patterns("/devices/{deviceId}"), delete_device, auth=Auth.USER)
    router.add("POST", client_patterns("/delete_devices"), delete_devices, auth=Auth.USER)
