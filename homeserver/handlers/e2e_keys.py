"""/keys/upload, /keys/query, /keys/claim and /keys/changes.

Keys are stored as clients signed them; the server checks their shape and the device's
own signature, and refuses to let a device change its identity keys (a client that lost
them must log in as a new device). Users of other servers go through ``RemoteKeys``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

from homeserver.errors import MatrixError, bad_json, invalid_param, missing_param
from homeserver.events.model import JsonDict
from homeserver.handlers.device_lists import DeviceListHandler
from homeserver.handlers.remote_keys import RemoteKeys, RemoteServerUnavailable, failure
from homeserver.streams import StreamToken, TokenError
from homeserver.types import Requester, UserID
from storage.e2e_keys import (
    E2EKeyStore,
    IdentityKeysChanged,
    NewKey,
    OneTimeKeyConflict,
    SignatureRow,
)

logger = logging.getLogger(__name__)

FALLBACK_KEYS_UNSTABLE = "org.matrix.msc2732.fallback_keys"
MAX_QUERY_TIMEOUT_MS = 60_000


def invalid_signature(error: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_SIGNATURE", error)


def verify_ed25519(obj: JsonDict, user_id: str, key_id: str, public_key: str) -> bool:
    """Whether ``obj`` carries a valid signature by ``user_id``'s ``key_id``."""
    try:
        verify_key = decode_verify_key_bytes(key_id, decode_base64(public_key))
        verify_signed_json(obj, user_id, verify_key)
    except (SignatureVerifyException, ValueError, TypeError, KeyError):
        return False
    except Exception:  # nacl raises its own errors for malformed keys
        return False
    return True


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _check_signatures_shape(value: Any, what: str) -> None:
    if not isinstance(value, dict) or not all(_is_str_map(v) for v in value.values()):
        raise bad_json(f"'{what}.signatures' must map user IDs to key IDs to signatures")


def merge_signatures(obj: JsonDict, rows: list[SignatureRow]) -> JsonDict:
    if not rows:
        return obj
    merged = dict(obj)
    signatures = {u: dict(s) for u, s in (obj.get("signatures") or {}).items()}
    for row in rows:
        signatures.setdefault(row.signer_user_id, {})[row.signer_key_id] = row.signature
    merged["signatures"] = signatures
    return merged


class E2EKeysHandler:
    def __init__(
        self,
        *,
        server_name: str,
        store: E2EKeyStore,
        device_lists: DeviceListHandler,
        remote: RemoteKeys,
        now_ms: Callable[[], int],
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.device_lists = device_lists
        self.remote = remote
        self.now_ms = now_ms

    def is_mine(self, user_id: str) -> bool:
        return user_id.endswith(f":{self.server_name}")

    # --- /keys/upload ----------------------------------------------------------------------

    async def upload(self, requester: Requester, body: JsonDict) -> JsonDict:
        user_id, device_id = requester.user_id, requester.device_id
        if device_id is None:
            raise invalid_param("To upload keys, the access token must belong to a device")
        device_keys = body.get("device_keys")
        if device_keys is not None:
            self._check_device_keys(device_keys, user_id, device_id)
        signing_key = None
        if isinstance(device_keys, dict):
            signing_key = device_keys["keys"][f"ed25519:{device_id}"]
        else:
            stored = await self.store.get_device_key(user_id, device_id)
            if stored is not None:
                signing_key = stored.get("keys", {}).get(f"ed25519:{device_id}")
        one_time_keys = self._parse_keys(
            body.get("one_time_keys"), "one_time_keys", user_id, device_id, signing_key
        )
        fallback_body = body.get("fallback_keys", body.get(FALLBACK_KEYS_UNSTABLE))
        fallback_keys = self._parse_keys(
            fallback_body, "fallback_keys", user_id, device_id, signing_key
        )
        if len({k.algorithm for k in fallback_keys}) != len(fallback_keys):
            raise bad_json("At most one fallback key per algorithm")
        try:
            counts, position = await self.store.upload(
                user_id, device_id, device_keys, one_time_keys, fallback_keys, self.now_ms()
            )
        except IdentityKeysChanged:
            raise invalid_param(
                "This device already has different identity keys; they cannot be replaced"
                " (log in as a new device instead)"
            ) from None
        except OneTimeKeyConflict as e:
            raise invalid_param(
                f"One-time key {e.key_id} already exists with different content"
            ) from None
        if position is not None:
            await self.device_lists.notify_change(user_id, position, [device_id])
        return {"one_time_key_counts": counts}

    @staticmethod
    def _check_device_keys(keys: Any, user_id: str, device_id: str) -> None:
        if not isinstance(keys, dict):
            raise bad_json("'device_keys' must be an object")
        for field in ("user_id", "device_id", "algorithms", "keys", "signatures"):
            if field not in keys:
                raise bad_json(f"'device_keys.{field}' is required")
        if keys["user_id"] != user_id:
            raise bad_json("'device_keys.user_id' does not match the authenticated user")
        if keys["device_id"] != device_id:
            raise bad_json("'device_keys.device_id' does not match the authenticated device")
        algorithms = keys["algorithms"]
        if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
            raise bad_json("'device_keys.algorithms' must be a list of strings")
        if not _is_str_map(keys["keys"]):
            raise bad_json("'device_keys.keys' must map key IDs to keys")
        _check_signatures_shape(keys["signatures"], "device_keys")
        key_id = f"ed25519:{device_id}"
        public_key = keys["keys"].get(key_id)
        if public_key is None:
            raise bad_json(f"'device_keys.keys' must include the device's {key_id!r} key")
        if not verify_ed25519(keys, user_id, key_id, public_key):
            raise invalid_signature(f"'device_keys' is not signed by the device's {key_id!r} key")

    @staticmethod
    def _parse_keys(
        keys: Any, what: str, user_id: str, device_id: str, signing_key: str | None
    ) -> list[NewKey]:
        if keys is None:
            return []
        if not isinstance(keys, dict):
            raise bad_json(f"'{what}' must be an object")
        parsed = []
        for full_id, key in keys.items():
            parts = full_id.split(":")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise bad_json(f"Invalid {what} key ID {full_id!r}: expected '<algorithm>:<id>'")
            if isinstance(key, dict):
                if not isinstance(key.get("key"), str):
                    raise bad_json(f"'{what}.{full_id}.key' must be a string")
                _check_signatures_shape(key.get("signatures"), f"{what}.{full_id}")
                # Signed keys must be signed by this device (when its keys are known).
                if signing_key is not None and not verify_ed25519(
                    key, user_id, f"ed25519:{device_id}", signing_key
                ):
                    raise invalid_signature(f"{what} key {full_id!r} has a bad signature")
            elif not isinstance(key, str):
                raise bad_json(f"'{what}.{full_id}' must be a string or a signed key object")
            parsed.append(NewKey(parts[0], parts[1], key))
        return parsed

    # --- /keys/query -----------------------------------------------------------------------

    async def query(self, requester: Requester, body: JsonDict) -> JsonDict:
        wanted = body.get("device_keys")
        if not isinstance(wanted, dict):
            raise bad_json("'device_keys' must be an object mapping user IDs to device lists")
        for user_id, devices in wanted.items():
            if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
                raise bad_json(f"'device_keys.{user_id}' must be a list of device IDs")
        timeout = _timeout(body)
        local: dict[str, list[str]] = {}
        remote: dict[str, dict[str, list[str]]] = defaultdict(dict)
        for user_id, devices in wanted.items():
            try:
                UserID.parse(user_id)
            except ValueError:
                raise invalid_param(f"Invalid user ID {user_id!r}") from None
            if self.is_mine(user_id):
                local[user_id] = devices
            else:
                remote[user_id.split(":", 1)[1]][user_id] = devices

        result: JsonDict = {
            "device_keys": {},
            "failures": {},
            "master_keys": {},
            "self_signing_keys": {},
            "user_signing_keys": {},
        }
        if local:
            await self._query_local(requester.user_id, local, result)
        for server_name, query in remote.items():
            try:
                answer = await self.remote.query_keys(server_name, query, timeout)
            except RemoteServerUnavailable as e:
                result["failures"][server_name] = failure(e)
                continue
            for field in ("device_keys", "master_keys", "self_signing_keys"):
                result[field].update(answer.get(field) or {})
        return result

    async def _query_local(
        self, requester_id: str, query: Mapping[str, list[str]], result: JsonDict
    ) -> None:
        stored = await self.store.get_device_keys(query)
        signatures: dict[tuple[str, str], list[SignatureRow]] = defaultdict(list)
        for row in await self.store.get_signatures(list(query)):
            # Others see a user's own signatures; a user sees theirs on other users' keys.
            if row.signer_user_id in (row.target_user_id, requester_id):
                signatures[(row.target_user_id, row.target_key_id)].append(row)
        for user_id in query:
            devices: JsonDict = {}
            for device_id, keys in stored.get(user_id, {}).items():
                device = merge_signatures(keys.keys, signatures.get((user_id, device_id), []))
                device["unsigned"] = {
                    **(device.get("unsigned") or {}),
                    "device_display_name": keys.display_name,
                }
                devices[device_id] = device
            result["device_keys"][user_id] = devices
        cross_signing = await self.store.get_cross_signing_keys(list(query))
        for user_id, user_keys in cross_signing.items():
            for key_type, key in user_keys.items():
                public = key_type_public(key)
                key = merge_signatures(key, signatures.get((user_id, public), []))
                if key_type == "master":
                    result["master_keys"][user_id] = key
                elif key_type == "self_signing":
                    result["self_signing_keys"][user_id] = key
                elif key_type == "user_signing" and user_id == requester_id:
                    result["user_signing_keys"][user_id] = key

    # --- /keys/claim -----------------------------------------------------------------------

    async def claim(self, requester: Requester, body: JsonDict) -> JsonDict:
        wanted = body.get("one_time_keys")
        if not isinstance(wanted, dict):
            raise bad_json("'one_time_keys' must be an object")
        timeout = _timeout(body)
        local: list[tuple[str, str, str]] = []
        remote: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
        for user_id, devices in wanted.items():
            if not isinstance(devices, dict) or not all(
                isinstance(a, str) for a in devices.values()
            ):
                raise bad_json(f"'one_time_keys.{user_id}' must map device IDs to algorithms")
            try:
                UserID.parse(user_id)
            except ValueError:
                raise invalid_param(f"Invalid user ID {user_id!r}") from None
            if self.is_mine(user_id):
                local.extend((user_id, d, a) for d, a in sorted(devices.items()))
            else:
                remote[user_id.split(":", 1)[1]][user_id] = devices
        result: JsonDict = {"one_time_keys": await self.store.claim(local), "failures": {}}
        for server_name, query in remote.items():
            try:
                answer = await self.remote.claim_keys(server_name, query, timeout)
            except RemoteServerUnavailable as e:
                result["failures"][server_name] = failure(e)
                continue
            result["one_time_keys"].update(answer.get("one_time_keys") or {})
        return result

    # --- /keys/changes ---------------------------------------------------------------------

    async def changes(
        self, requester: Requester, from_text: str | None, to_text: str | None
    ) -> JsonDict:
        if from_text is None:
            raise missing_param("Missing 'from'")
        if to_text is None:
            raise missing_param("Missing 'to'")
        try:
            since = StreamToken.parse(from_text)
            upto = StreamToken.parse(to_text)
        except TokenError as e:
            raise invalid_param(str(e)) from None
        changed, left = await self.device_lists.get_changes(requester.user_id, since, upto)
        return {"changed": changed, "left": left}


def key_type_public(key: JsonDict) -> str:
    """The public key of a cross-signing key (its single ``keys`` value)."""
    values = list((key.get("keys") or {}).values())
    return values[0] if len(values) == 1 and isinstance(values[0], str) else ""


def _timeout(body: JsonDict) -> int:
    timeout = body.get("timeout", 10_000)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
        raise bad_json("'timeout' must be a non-negative integer")
    return min(timeout, MAX_QUERY_TIMEOUT_MS)
