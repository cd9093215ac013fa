"""Cross-signing: ``/keys/device_signing/upload`` and ``/keys/signatures/upload``.

A user's master key signs their self-signing and user-signing keys; the self-signing key
signs their devices, the user-signing key other users' master keys, and devices may sign
their user's master key. Every signature is checked before it is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.errors import bad_json, forbidden, invalid_param, missing_param
from homeserver.events.model import JsonDict
from homeserver.handlers.device_lists import DeviceListHandler
from homeserver.handlers.e2e_keys import (
    invalid_signature,
    key_type_public,
    verify_ed25519,
)
from homeserver.handlers.uia import LOGIN_PASSWORD, UserInteractiveAuth
from homeserver.types import Requester
from storage.devices import DeviceStore
from storage.e2e_keys import E2EKeyStore, SignatureRow

KEY_FIELDS = {
    "master_key": "master",
    "self_signing_key": "self_signing",
    "user_signing_key": "user_signing",
}


def _strip(obj: JsonDict) -> JsonDict:
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def _error(errcode: str, error: str) -> JsonDict:
    return {"errcode": errcode, "error": error}


class CrossSigningHandler:
    def __init__(
        self,
        *,
        store: E2EKeyStore,
        devices: DeviceStore,
        device_lists: DeviceListHandler,
        uia: UserInteractiveAuth,
        is_mine: Any,
    ) -> None:
        self.store = store
        self.devices = devices
        self.device_lists = device_lists
        self.uia = uia
        self.is_mine = is_mine

    # --- /keys/device_signing/upload -------------------------------------------------------

    async def upload_keys(
        self, requester: Requester, body: JsonDict, *, method: str, uri: str
    ) -> None:
        user_id = requester.user_id
        new: dict[str, tuple[str, JsonDict]] = {}
        for field, key_type in KEY_FIELDS.items():
            key = body.get(field)
            if key is not None:
                new[key_type] = (self._check_key(key, field, key_type, user_id), key)
        existing = (await self.store.get_cross_signing_keys([user_id])).get(user_id, {})
        # v1.11: the first upload needs no UIA, nor does re-uploading the same keys.
        same = bool(new) and all(existing.get(t) == k for t, (_, k) in new.items())
        uia_session = None
        if "master" in existing and not same:
            result = await self.uia.authenticate(
                body, method=method, uri=uri, flows=[[LOGIN_PASSWORD]], user_id=user_id
            )
            uia_session = result.session_id
        if not new or same:
            if uia_session is not None:
                self.uia.finish(uia_session)
            return
        master = new.get("master", (None, existing.get("master")))[1]
        if master is None:
            raise missing_param("No master key available to verify signatures")
        master_public = key_type_public(master)
        device_ids = {d.device_id for d in await self.devices.get_devices(user_id)}
        for key_type, (public, key) in new.items():
            if public in device_ids:
                raise forbidden("A cross-signing key may not have a device ID as its public key")
            if key_type != "master" and not verify_ed25519(
                key, user_id, f"ed25519:{master_public}", master_public
            ):
                raise invalid_signature(f"The {key_type} key is not signed by the master key")
        position = await self.store.set_cross_signing_keys(user_id, new)
        if uia_session is not None:
            self.uia.finish(uia_session)
        if position is not None:
            await self.device_lists.notify_change(user_id, position)

    @staticmethod
    def _check_key(key: Any, field: str, key_type: str, user_id: str) -> str:
        if not isinstance(key, dict):
            raise bad_json(f"'{field}' must be an object")
        if key.get("user_id") != user_id:
            raise invalid_param(f"'{field}.user_id' must be the authenticated user")
        usage = key.get("usage")
        if not isinstance(usage, list) or key_type not in usage:
            raise invalid_param(f"'{field}.usage' must include {key_type!r}")
        keys = key.get("keys")
        if not isinstance(keys, dict) or len(keys) != 1:
            raise invalid_param(f"'{field}.keys' must have exactly one key")
        [(key_id, public)] = keys.items()
        if not isinstance(public, str) or key_id != f"ed25519:{public}":
            raise invalid_param(f"'{field}.keys' must be {{'ed25519:<key>': '<key>'}}")
        signatures = key.get("signatures", {})
        if not isinstance(signatures, dict) or not all(
            isinstance(s, dict) for s in signatures.values()
        ):
            raise bad_json(f"'{field}.signatures' must be an object")
        return public

    # --- /keys/signatures/upload -----------------------------------------------------------

    async def upload_signatures(self, requester: Requester, body: JsonDict) -> JsonDict:
        signer = requester.user_id
        failures: dict[str, dict[str, JsonDict]] = {}
        rows: list[SignatureRow] = []
        own_keys = (await self.store.get_cross_signing_keys([signer])).get(signer, {})
        targets = [u for u in body if self.is_mine(u)]
        cross_signing = await self.store.get_cross_signing_keys(targets)
        devices = await self.store.get_device_keys({signer: []}) if signer in body else {}
        for user_id, objects in body.items():
            if not isinstance(objects, dict):
                raise bad_json(f"'{user_id}' must map key IDs to signed objects")
            for key_id, obj in objects.items():
                try:
                    if not isinstance(obj, dict):
                        raise _Failure("M_BAD_JSON", "Expected a signed JSON object")
                    rows.extend(
                        self._check_signed(
                            signer,
                            user_id,
                            key_id,
                            obj,
                            own_keys,
                            cross_signing.get(user_id, {}),
                            {d: k.keys for d, k in devices.get(signer, {}).items()},
                        )
                    )
                except _Failure as e:
                    failures.setdefault(user_id, {})[key_id] = _error(e.errcode, e.error)
        position = await self.store.store_signatures(rows)
        if position is not None:
            for target in sorted({r.target_user_id for r in rows}):
                await self.device_lists.notify_change(target, position)
        return {"failures": failures}

    def _check_signed(
        self,
        signer: str,
        user_id: str,
        key_id: str,
        obj: JsonDict,
        own_keys: dict[str, JsonDict],
        target_keys: dict[str, JsonDict],
        own_devices: dict[str, JsonDict],
    ) -> Sequence[SignatureRow]:
        if not self.is_mine(user_id):
            raise _Failure("M_NOT_FOUND", "Signing keys of other servers' users is not available")
        if obj.get("user_id") != user_id:
            raise _Failure("M_INVALID_PARAM", "The object's user_id does not match")
        new_signatures = (obj.get("signatures") or {}).get(signer)
        if not isinstance(new_signatures, dict) or not new_signatures:
            raise _Failure("M_INVALID_PARAM", "No signature by the uploading user")
        if user_id == signer and key_id in own_devices:
            # Our own device, signed by our self-signing key.
            stored, public_signer = own_devices[key_id], own_keys.get("self_signing")
            target_key_id = key_id
            if obj.get("device_id") != key_id:
                raise _Failure("M_INVALID_PARAM", "The object's device_id does not match")
            allowed = {f"ed25519:{key_type_public(public_signer)}"} if public_signer else set()
            signing_keys = {k: k.split(":", 1)[1] for k in allowed}
        elif user_id == signer and key_type_public(own_keys.get("master") or {}) == key_id:
            # Our master key, signed by one of our devices (or by the master key itself).
            stored = own_keys["master"]
            target_key_id = key_id
            signing_keys = {}
            for device_id, device in own_devices.items():
                public = (device.get("keys") or {}).get(f"ed25519:{device_id}")
                if isinstance(public, str):
                    signing_keys[f"ed25519:{device_id}"] = public
        elif user_id != signer and key_type_public(target_keys.get("master") or {}) == key_id:
            # Another user's master key, signed by our user-signing key.
            stored = target_keys["master"]
            target_key_id = key_id
            usk = own_keys.get("user_signing")
            signing_keys = {}
            if usk is not None:
                public = key_type_public(usk)
                signing_keys[f"ed25519:{public}"] = public
        else:
            raise _Failure("M_NOT_FOUND", f"Unknown key {key_id!r} of {user_id}")
        if _strip(obj) != _strip(stored):
            raise _Failure("M_INVALID_PARAM", "The signed object does not match the stored key")
        rows = []
        already = (stored.get("signatures") or {}).get(signer) or {}
        for signer_key_id, signature in new_signatures.items():
            if already.get(signer_key_id) == signature:
                continue  # the object as stored came with it (e.g. a device's own)
            public = signing_keys.get(signer_key_id)
            if public is None:
                raise _Failure(
                    "M_INVALID_SIGNATURE", f"{signer_key_id!r} is not a key that may sign this"
                )
            one = {**_strip(stored), "signatures": {signer: {signer_key_id: signature}}}
            if not isinstance(signature, str) or not verify_ed25519(
                one, signer, signer_key_id, public
            ):
                raise _Failure("M_INVALID_SIGNATURE", f"Invalid signature by {signer_key_id!r}")
            rows.append(SignatureRow(user_id, target_key_id, signer, signer_key_id, signature))
        return rows


class _Failure(Exception):
    def __init__(self, errcode: str, error: str) -> None:
        super().__init__(error)
        self.errcode = errcode
        self.error = error
