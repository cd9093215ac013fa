"""The account itself: who am I, changing the password, deactivating."""

from __future__ import annotations

from typing import Any

from homeserver.errors import MatrixError, missing_param
from homeserver.handlers.login import optional_bool
from homeserver.handlers.profile import MembershipSync
from homeserver.handlers.register import MAX_PASSWORD_LENGTH
from homeserver.handlers.uia import LOGIN_PASSWORD, UserInteractiveAuth
from homeserver.passwords import PasswordHasher
from homeserver.types import Requester
from storage.accounts import AccountStore


class AccountHandler:
    def __init__(
        self,
        *,
        accounts: AccountStore,
        passwords: PasswordHasher,
        uia: UserInteractiveAuth,
        membership_sync: MembershipSync,
    ) -> None:
        self._accounts = accounts
        self._passwords = passwords
        self._uia = uia
        self.membership_sync = membership_sync

    @staticmethod
    def whoami(requester: Requester) -> dict[str, Any]:
        body: dict[str, Any] = {"user_id": requester.user_id, "is_guest": requester.is_guest}
        if requester.device_id is not None:
            body["device_id"] = requester.device_id
        return body

    async def change_password(
        self, requester: Requester, body: dict[str, Any], *, method: str, uri: str
    ) -> None:
        if body.get("new_password") is not None:
            _check_new_password(body)  # a bad password is refused before the auth stages
        result = await self._uia.authenticate(
            body, method=method, uri=uri, flows=[[LOGIN_PASSWORD]], user_id=requester.user_id
        )
        params = result.clientdict
        new_password = _check_new_password(params)
        logout_devices = optional_bool(params, "logout_devices", True)
        password_hash = await self._passwords.hash(new_password)
        await self._accounts.set_password_hash(
            requester.user_id,
            password_hash,
            keep_device_id=requester.device_id,
            keep_token_id=requester.access_token_id,
            logout_others=logout_devices,
        )
        self._uia.finish(result.session_id)

    async def deactivate(
        self, requester: Requester, body: dict[str, Any], *, method: str, uri: str
    ) -> dict[str, Any]:
        erase = optional_bool(body, "erase")
        result = await self._uia.authenticate(
            body, method=method, uri=uri, flows=[[LOGIN_PASSWORD]], user_id=requester.user_id
        )
        erase = optional_bool(result.clientdict, "erase", erase)
        await self._accounts.deactivate(requester.user_id, erase=erase)
        self._uia.finish(result.session_id)
        await self.membership_sync.user_deactivated(requester.user_id)
        # No identity server bindings are kept, so there is nothing to unbind.
        return {"id_server_unbind_result": "no-support"}


def _check_new_password(body: dict[str, Any]) -> str:
    password = body.get("new_password")
    if password is None:
        raise missing_param("Missing 'new_password'")
    if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD_LENGTH:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid 'new_password'")
    return password
