"""Synapse's admin API for registration tokens: checks and shapes, over the token store."""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable
from typing import Any

from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.handlers.uia import UserInteractiveAuth, is_token_usable
from storage.registration_tokens import RegistrationToken, RegistrationTokenStore

MAX_TOKEN_LENGTH = 64
DEFAULT_TOKEN_LENGTH = 16
_TOKEN_CHARS = string.ascii_letters + string.digits + "._~-"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~\-]{1,64}$")


def _optional_int(body: dict[str, Any], key: str, *, minimum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise invalid_param(f"{key} must be a non-negative integer or null")
    return value


class RegistrationTokenAdmin:
    def __init__(
        self,
        store: RegistrationTokenStore,
        uia: UserInteractiveAuth,
        now_ms: Callable[[], int],
    ) -> None:
        self._store = store
        self._uia = uia
        self._now_ms = now_ms

    def to_json(self, token: RegistrationToken) -> dict[str, Any]:
        return {
            "token": token.token,
            "uses_allowed": token.uses_allowed,
            "pending": self._uia.pending_uses(token.token),
            "completed": token.completed,
            "expiry_time": token.expiry_time,
        }

    async def list(self, valid: bool | None) -> dict[str, Any]:
        tokens = await self._store.list()
        now = self._now_ms()
        if valid is not None:
            tokens = [
                t
                for t in tokens
                if is_token_usable(t, self._uia.pending_uses(t.token), now) == valid
            ]
        return {"registration_tokens": [self.to_json(t) for t in tokens]}

    async def get(self, token: str) -> dict[str, Any]:
        stored = await self._store.get(token)
        if stored is None:
            raise not_found(f"No such registration token: {token}")
        return self.to_json(stored)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        uses_allowed = _optional_int(body, "uses_allowed", minimum=0)
        expiry_time = body.get("expiry_time")
        if expiry_time is not None:
            if isinstance(expiry_time, bool) or not isinstance(expiry_time, int):
                raise invalid_param("expiry_time must be an integer or null")
            if expiry_time < self._now_ms():
                raise invalid_param("expiry_time must not be in the past")
        token = body.get("token")
        if token is not None:
            if not isinstance(token, str) or not _TOKEN_RE.match(token):
                raise invalid_param(
                    f"token must consist only of characters matched by the regex "
                    f"[A-Za-z0-9._~-] and be at most {MAX_TOKEN_LENGTH} characters"
                )
            if not await self._store.create(token, uses_allowed, expiry_time):
                raise invalid_param(f"Token already exists: {token}")
        else:
            length = body.get("length", DEFAULT_TOKEN_LENGTH)
            if (
                isinstance(length, bool)
                or not isinstance(length, int)
                or not 0 < length <= MAX_TOKEN_LENGTH
            ):
                raise invalid_param(f"length must be an integer > 0 and <= {MAX_TOKEN_LENGTH}")
            for _ in range(3):
                token = "".join(secrets.choice(_TOKEN_CHARS) for _ in range(length))
                if await self._store.create(token, uses_allowed, expiry_time):
                    break
            else:
                raise MatrixError(500, "M_UNKNOWN", "Could not create a unique token")
        return await self.get(token)

    async def update(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        changes: dict[str, int | None] = {}
        if "uses_allowed" in body:
            changes["uses_allowed"] = _optional_int(body, "uses_allowed", minimum=0)
        if "expiry_time" in body:
            expiry_time = body["expiry_time"]
            if expiry_time is not None:
                if isinstance(expiry_time, bool) or not isinstance(expiry_time, int):
                    raise invalid_param("expiry_time must be an integer or null")
                if expiry_time < self._now_ms():
                    raise invalid_param("expiry_time must not be in the past")
            changes["expiry_time"] = expiry_time
        updated = await self._store.update(token, changes)
        if updated is None:
            raise not_found(f"No such registration token: {token}")
        return self.to_json(updated)

    async def delete(self, token: str) -> dict[str, Any]:
        if not await self._store.delete(token):
            raise not_found(f"No such registration token: {token}")
        return {}
