"""End-to-end encryption across servers: the ``RemoteKeys`` the E2EE handlers use, and
device list / cross-signing EDUs both ways.

Outbound, a local user's device list change becomes one ``m.device_list_update`` per
changed device, carrying the change's position on the device_lists stream as
``stream_id`` and the user's previous device change as ``prev_id``; a cross-signing
change becomes an ``m.signing_key_update``.

Inbound, updates are applied in order to the cached list (``storage.remote_devices``)
when their ``prev_id`` names the last update applied; otherwise an update was missed and
the whole list is fetched again with ``GET /user/devices/{userId}``. Either way the user
is marked changed on the device_lists stream, so local users sharing a room see them in
/sync's ``device_lists.changed``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any, Protocol

from federation.client import FederationError, federation_path
from federation.edus import EduRegistry, FederationEdus, domain_of
from homeserver.e2e_services import E2EServices
from homeserver.handlers.remote_keys import RemoteServerUnavailable
from homeserver.util.linearizer import Linearizer
from storage.devices import DeviceStore
from storage.remote_devices import RemoteDeviceStore

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

DEVICE_LIST_UPDATE = "m.device_list_update"
SIGNING_KEY_UPDATE = "m.signing_key_update"
CROSS_SIGNING_TYPES = {"master_key": "master", "self_signing_key": "self_signing"}
RESYNC_TIMEOUT_SECONDS = 30.0


class FederationRequests(Protocol):
    async def get_json(
        self, destination: str, path: str, args: Any = None, timeout: float | None = None
    ) -> Any: ...

    async def post_json(
        self,
        destination: str,
        path: str,
        args: Any = None,
        data: Any = None,
        timeout: float | None = None,
    ) -> Any: ...


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class FederationRemoteKeys:
    """The E2EE handlers' ``RemoteKeys``, over federation."""

    def __init__(
        self,
        *,
        server_name: str,
        client: FederationRequests,
        edus: FederationEdus,
        e2e: E2EServices,
        devices: DeviceStore,
    ) -> None:
        self.server_name = server_name
        self.client = client
        self.edus = edus
        self.e2e = e2e
        self.devices = devices
        self.store = RemoteDeviceStore(e2e.device_list_store.db, e2e.device_list_store)
        self._user_locks = Linearizer()

    def install(self) -> None:
        """Take the place of the handlers' local-only seam."""
        self.e2e.remote = self
        self.e2e.device_lists.remote = self
        self.e2e.keys.remote = self
        self.e2e.to_device.remote = self

    def register(self, transactions: EduRegistry) -> None:
        transactions.register_edu_handler(DEVICE_LIST_UPDATE, self.on_device_list_update)
        transactions.register_edu_handler(SIGNING_KEY_UPDATE, self.on_signing_key_update)

    # --- RemoteKeys -------------------------------------------------------------------

    async def query_keys(
        self, server_name: str, device_keys: Mapping[str, list[str]], timeout_ms: int
    ) -> JsonDict:
        path = "/_matrix/federation/v1/user/keys/query"
        try:
            answer = await self.client.post_json(
                server_name,
                path,
                data={"device_keys": dict(device_keys)},
                timeout=timeout_ms / 1000,
            )
        except FederationError as e:
            cached = await self._cached_answer(device_keys)
            if cached is not None:
                logger.info("keys of %s users from the cache: %s", server_name, e)
                return cached
            raise RemoteServerUnavailable(str(e)) from None
        if not isinstance(answer, dict):
            raise RemoteServerUnavailable(f"{server_name}: malformed /user/keys/query answer")
        return _only_asked(answer, device_keys)

    async def _cached_answer(self, device_keys: Mapping[str, list[str]]) -> JsonDict | None:
        """The cached lists, when every user asked about is tracked."""
        cached = await self.store.get_cached(list(device_keys))
        if set(cached) != set(device_keys):
            return None
        answer: JsonDict = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
        for user_id, wanted in device_keys.items():
            entry = cached[user_id]
            answer["device_keys"][user_id] = {
                device_id: keys
                for device_id, keys in entry.devices.items()
                if keys is not None and (not wanted or device_id in wanted)
            }
            for field, key_type in CROSS_SIGNING_TYPES.items():
                if key_type in entry.cross_signing:
                    answer[field + "s"][user_id] = entry.cross_signing[key_type]
        return answer

    async def claim_keys(
        self, server_name: str, one_time_keys: Mapping[str, Mapping[str, str]], timeout_ms: int
    ) -> JsonDict:
        path = "/_matrix/federation/v1/user/keys/claim"
        body = {"one_time_keys": {u: dict(d) for u, d in one_time_keys.items()}}
        try:
            answer = await self.client.post_json(
                server_name, path, data=body, timeout=timeout_ms / 1000
            )
        except FederationError as e:
            raise RemoteServerUnavailable(str(e)) from None
        claimed = answer.get("one_time_keys") if isinstance(answer, dict) else None
        if not isinstance(claimed, dict):
            raise RemoteServerUnavailable(f"{server_name}: malformed /user/keys/claim answer")
        return {
            "one_time_keys": {
                user_id: devices
                for user_id, devices in claimed.items()
                if user_id in one_time_keys and isinstance(devices, dict)
            }
        }

    async def send_to_device(
        self,
        server_name: str,
        sender: str,
        message_type: str,
        message_id: str,
        messages: Mapping[str, Mapping[str, JsonDict]],
    ) -> None:
        await self.edus.send_to_device(server_name, sender, message_type, message_id, messages)

    async def device_list_changed(
        self, user_id: str, device_ids: Collection[str], destinations: Collection[str]
    ) -> None:
        if domain_of(user_id) != self.server_name:
            return  # another server's user: their server tells everyone itself
        latest = await self.store.get_latest_local_change(user_id)
        if latest is None:
            return
        position, prev, changed = latest
        edus: list[tuple[str, JsonDict]] = []
        for device_id in changed:
            if device_id is None:
                continue
            keys = await self.e2e.key_store.get_device_key(user_id, device_id)
            deleted = await self.devices.get_device(user_id, device_id) is None
            content: JsonDict = {
                "user_id": user_id,
                "device_id": device_id,
                "stream_id": position,
                "prev_id": [prev] if prev is not None else [],
                "deleted": deleted,
            }
            if keys is not None and not deleted:
                content["keys"] = keys
            edus.append((DEVICE_LIST_UPDATE, content))
        if None in changed:
            cross = (await self.e2e.key_store.get_cross_signing_keys([user_id])).get(user_id, {})
            signing: JsonDict = {"user_id": user_id}
            for field, key_type in CROSS_SIGNING_TYPES.items():
                if key_type in cross:
                    signing[field] = cross[key_type]
            if len(signing) > 1:
                edus.append((SIGNING_KEY_UPDATE, signing))
        for destination in set(destinations) - {self.server_name}:
            for edu_type, content in edus:
                self.edus.sender.send_edu(destination, edu_type, content)

    # --- inbound ----------------------------------------------------------------------

    async def _tracked(self, user_id: str) -> bool:
        """Whether a local user shares a room with ``user_id`` (else their devices are of
        no concern here, as in Synapse)."""
        sharing = await self.e2e.device_list_store.get_users_sharing_room(user_id)
        return any(domain_of(u) == self.server_name for u in sharing)

    async def on_device_list_update(self, origin: str, content: JsonDict) -> None:
        user_id = content.get("user_id")
        device_id = content.get("device_id")
        stream_id = content.get("stream_id")
        prev_ids = content.get("prev_id", [])
        if not isinstance(user_id, str) or domain_of(user_id) != origin:
            logger.info("device list update from %s about %r ignored", origin, user_id)
            return
        if (
            not isinstance(device_id, str)
            or not _is_int(stream_id)
            or not isinstance(prev_ids, list)
        ):
            logger.info("malformed device list update from %s ignored", origin)
            return
        assert isinstance(stream_id, int)
        if not await self._tracked(user_id):
            return
        keys = content.get("keys")
        async with self._user_locks.lock(user_id):
            known = await self.store.get_position(user_id)
            if known is not None and stream_id < known:
                return  # already applied (a retried transaction, or out of order)
            if known is not None and (stream_id == known or known in prev_ids):
                position = await self.store.apply_update(
                    user_id,
                    device_id,
                    stream_id,
                    keys if isinstance(keys, dict) else None,
                    content.get("deleted") is True,
                )
            else:
                position = await self._resync(user_id)
        if position is not None:
            await self.e2e.device_lists.notify_change(user_id, position)

    async def _resync(self, user_id: str) -> int | None:
        """Fetch the user's whole list again; if their server cannot say, forget what we
        had (the next update fetches it again) and still mark them changed."""
        server = domain_of(user_id)
        try:
            answer = await self.client.get_json(
                server,
                federation_path("/_matrix/federation/v1/user/devices/%s", user_id),
                timeout=RESYNC_TIMEOUT_SECONDS,
            )
            devices, cross_signing, stream_id = _parse_user_devices(answer, user_id)
        except (FederationError, ValueError) as e:
            logger.info("device list resync of %s failed: %s", user_id, e)
            return await self.store.forget(user_id)
        return await self.store.replace_all(user_id, stream_id, devices, cross_signing)

    async def on_signing_key_update(self, origin: str, content: JsonDict) -> None:
        user_id = content.get("user_id")
        if not isinstance(user_id, str) or domain_of(user_id) != origin:
            logger.info("signing key update from %s about %r ignored", origin, user_id)
            return
        keys = {
            key_type: content[field]
            for field, key_type in CROSS_SIGNING_TYPES.items()
            if isinstance(content.get(field), dict)
        }
        if not keys or not await self._tracked(user_id):
            return
        async with self._user_locks.lock(user_id):
            position = await self.store.set_cross_signing(user_id, keys)
        if position is not None:
            await self.e2e.device_lists.notify_change(user_id, position)


def _parse_user_devices(
    answer: Any, user_id: str
) -> tuple[dict[str, JsonDict | None], dict[str, JsonDict], int]:
    if not isinstance(answer, dict) or answer.get("user_id") != user_id:
        raise ValueError("answer is not about the user asked for")
    stream_id = answer.get("stream_id")
    listed = answer.get("devices")
    if not isinstance(stream_id, int) or isinstance(stream_id, bool):
        raise ValueError("answer lacks a stream_id")
    if not isinstance(listed, list):
        raise ValueError("answer lacks devices")
    devices: dict[str, JsonDict | None] = {}
    for device in listed:
        if isinstance(device, dict) and isinstance(device.get("device_id"), str):
            keys = device.get("keys")
            devices[device["device_id"]] = keys if isinstance(keys, dict) else None
    cross_signing = {
        key_type: answer[field]
        for field, key_type in CROSS_SIGNING_TYPES.items()
        if isinstance(answer.get(field), dict)
    }
    return devices, cross_signing, stream_id


def _only_asked(answer: JsonDict, asked: Mapping[str, list[str]]) -> JsonDict:
    """What a server said about the users we asked it about, and nothing else: a server
    speaks only for its own users."""
    result: JsonDict = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
    for field in result:
        section = answer.get(field)
        if not isinstance(section, dict):
            continue
        for user_id, value in section.items():
            if user_id in asked and isinstance(value, dict):
                result[field][user_id] = value
    for user_id, devices in result["device_keys"].items():
        result["device_keys"][user_id] = {
            device_id: keys
            for device_id, keys in devices.items()
            if isinstance(keys, dict)
            and keys.get("user_id") == user_id
            and keys.get("device_id") == device_id
        }
    return result
