"""Devices: listing, renaming, deleting (with user-interactive auth), and "last seen".

Last-seen facts are kept in memory and written in one batch every few seconds, so an
authenticated request never waits for, or causes, its own database write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from homeserver.errors import MatrixError, not_found
from homeserver.handlers.login import MAX_DEVICE_DISPLAY_NAME_LENGTH
from homeserver.handlers.uia import LOGIN_PASSWORD, UserInteractiveAuth
from homeserver.types import Requester
from storage.accounts import AccountStore
from storage.devices import Device, DeviceStore, LastSeen

logger = logging.getLogger(__name__)

LAST_SEEN_FLUSH_SECONDS = 5.0


class DeviceHandler:
    def __init__(
        self,
        *,
        devices: DeviceStore,
        accounts: AccountStore,
        uia: UserInteractiveAuth,
        reactor: Any,
        now_ms: Callable[[], int],
    ) -> None:
        self._devices = devices
        self._accounts = accounts
        self._uia = uia
        self._reactor = reactor
        self._now_ms = now_ms
        self._pending_seen: dict[tuple[str, str], LastSeen] = {}
        self._flush_call: Any = None  # IDelayedCall
        self._stopped = False

    # --- last seen ---------------------------------------------------------------------

    def record_seen(self, user_id: str, device_id: str, ip: str, user_agent: str | None) -> None:
        if self._stopped:
            return
        self._pending_seen[(user_id, device_id)] = LastSeen(self._now_ms(), ip, user_agent)
        if self._flush_call is None:
            self._flush_call = self._reactor.callLater(LAST_SEEN_FLUSH_SECONDS, self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_call = None
        from twisted.internet.defer import Deferred

        Deferred.fromCoroutine(self.flush_last_seen())

    async def flush_last_seen(self) -> None:
        pending, self._pending_seen = self._pending_seen, {}
        if not pending:
            return
        try:
            await self._devices.store_last_seen((u, d, s) for (u, d), s in pending.items())
        except Exception:
            logger.warning("could not store devices' last seen times", exc_info=True)

    async def stop(self) -> None:
        """Write what is pending; record nothing more (the database is about to close)."""
        self._stopped = True
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        await self.flush_last_seen()

    def _with_pending(self, device: Device) -> Device:
        seen = self._pending_seen.get((device.user_id, device.device_id))
        if seen is None:
            return device
        return Device(
            device.user_id, device.device_id, device.display_name, seen.ts, seen.ip, seen.user_agent
        )

    # --- the endpoints -------------------------------------------------------------------

    async def get_devices(self, requester: Requester) -> list[dict[str, Any]]:
        devices = await self._devices.get_devices(requester.user_id)
        return [device_json(self._with_pending(d)) for d in devices]

    async def get_device(self, requester: Requester, device_id: str) -> dict[str, Any]:
        device = await self._devices.get_device(requester.user_id, device_id)
        if device is None:
            raise not_found("Device not found")
        return device_json(self._with_pending(device))

    async def update_device(
        self, requester: Requester, device_id: str, body: dict[str, Any]
    ) -> None:
        display_name = body.get("display_name")
        if display_name is None:
            if await self._devices.get_device(requester.user_id, device_id) is None:
                raise not_found("Device not found")
            return
        if not isinstance(display_name, str):
            raise MatrixError(400, "M_INVALID_PARAM", "'display_name' must be a string")
        if len(display_name) > MAX_DEVICE_DISPLAY_NAME_LENGTH:
            raise MatrixError(
                400,
                "M_TOO_LARGE",
                f"Device display name is too long (max {MAX_DEVICE_DISPLAY_NAME_LENGTH})",
            )
        if not await self._devices.set_display_name(requester.user_id, device_id, display_name):
            raise not_found("Device not found")

    async def delete_devices_with_auth(
        self,
        requester: Requester,
        device_ids: Sequence[str],
        body: dict[str, Any],
        *,
        method: str,
        uri: str,
    ) -> None:
        result = await self._uia.authenticate(
            body, method=method, uri=uri, flows=[[LOGIN_PASSWORD]], user_id=requester.user_id
        )
        await self.delete_devices(requester.user_id, list(device_ids))
        self._uia.finish(result.session_id)

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Delete devices and revoke every token issued on them (devices unknown: ignored)."""
        for device_id in device_ids:
            self._pending_seen.pop((user_id, device_id), None)
        await self._accounts.delete_devices(user_id, device_ids)


def device_json(device: Device) -> dict[str, Any]:
    return {
        "device_id": device.device_id,
        "display_name": device.display_name,
        "last_seen_ip": device.last_seen_ip,
        "last_seen_ts": device.last_seen_ts,
    }
