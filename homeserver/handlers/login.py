"""Logging in and out: access tokens, refresh tokens, their lifetimes.

Tokens are random strings handed to the client once; the database keeps only their
SHA-256 (see ``storage.accounts``). Lifetimes follow Synapse's settings:
``refreshable_access_token_lifetime`` for tokens issued with a refresh token,
``nonrefreshable_access_token_lifetime`` for the others, ``refresh_token_lifetime`` for
refresh tokens and ``session_lifetime`` capping all of them for the whole login.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeserver.config.model import AccountsConfig
from homeserver.errors import MatrixError, forbidden, limit_exceeded, missing_param
from homeserver.handlers.uia import (
    LOGIN_PASSWORD,
    give_back_failure_slot,
    identified_user,
    take_failure_slot,
)
from homeserver.passwords import PasswordHasher
from homeserver.ratelimit import Ratelimiter
from homeserver.types import Requester, UserID
from storage.accounts import (
    AccountStore,
    NewAccessToken,
    NewRefreshToken,
    NewSession,
    RefreshTokenInfo,
    token_sha256,
)

ACCESS_TOKEN_PREFIX = "hat_"
REFRESH_TOKEN_PREFIX = "hrt_"
MAX_DEVICE_ID_LENGTH = 255
MAX_DEVICE_DISPLAY_NAME_LENGTH = 100  # as Synapse


def new_token_id() -> int:
    # Random 62-bit row ids: no sequence to share between the engines or to coordinate,
    # and a collision among even billions of tokens is vanishingly unlikely.
    return secrets.randbits(62) + 1


def new_device_id() -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(10))


@dataclass(frozen=True)
class LoginResult:
    user_id: str
    device_id: str
    access_token: str
    refresh_token: str | None
    expires_in_ms: int | None

    def to_json(self, server_name: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "user_id": self.user_id,
            "access_token": self.access_token,
            "device_id": self.device_id,
            "home_server": server_name,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        if self.expires_in_ms is not None:
            body["expires_in_ms"] = self.expires_in_ms
        return body


def optional_string(body: dict[str, Any], key: str, max_length: int | None = None) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MatrixError(400, "M_INVALID_PARAM", f"'{key}' must be a string")
    if max_length is not None and len(value) > max_length:
        raise MatrixError(400, "M_INVALID_PARAM", f"'{key}' is longer than {max_length}")
    return value


def optional_bool(body: dict[str, Any], key: str, default: bool = False) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise MatrixError(400, "M_INVALID_PARAM", f"'{key}' must be true or false")
    return value


class Sessions:
    """Creates logins (device + tokens) and exchanges refresh tokens."""

    def __init__(
        self, accounts: AccountStore, settings: AccountsConfig, now_ms: Callable[[], int]
    ) -> None:
        self._accounts = accounts
        self._settings = settings
        self._now_ms = now_ms

    @property
    def refresh_tokens_enabled(self) -> bool:
        return self._settings.refreshable_access_token_lifetime_ms is not None

    def _new_tokens(
        self,
        device_id: str,
        display_name: str | None,
        *,
        refreshable: bool,
        ultimate_expiry: int | None,
        now: int,
    ) -> tuple[NewSession, str, str | None]:
        settings = self._settings
        refresh: NewRefreshToken | None = None
        refresh_token: str | None = None
        if refreshable and settings.refreshable_access_token_lifetime_ms is not None:
            valid_until = _min(now + settings.refreshable_access_token_lifetime_ms, ultimate_expiry)
            refresh_expiry = _min(_plus(now, settings.refresh_token_lifetime_ms), ultimate_expiry)
            refresh_token = REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
            refresh = NewRefreshToken(
                new_token_id(), token_sha256(refresh_token), refresh_expiry, ultimate_expiry
            )
        else:
            valid_until = _min(
                _plus(now, settings.nonrefreshable_access_token_lifetime_ms), ultimate_expiry
            )
        access_token = ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)
        access = NewAccessToken(new_token_id(), token_sha256(access_token), valid_until)
        return NewSession(device_id, display_name, access, refresh), access_token, refresh_token

    def new_login(
        self,
        user_id: str,
        device_id: str | None,
        display_name: str | None,
        *,
        refreshable: bool,
    ) -> tuple[NewSession, LoginResult]:
        """The tokens of a new login, to be stored (with the user, when registering)."""
        now = self._now_ms()
        ultimate = _plus(now, self._settings.session_lifetime_ms)
        session, access_token, refresh_token = self._new_tokens(
            device_id or new_device_id(),
            display_name,
            refreshable=refreshable,
            ultimate_expiry=ultimate,
            now=now,
        )
        valid_until = session.access.valid_until_ms
        result = LoginResult(
            user_id,
            session.device_id,
            access_token,
            refresh_token,
            valid_until - now if valid_until is not None else None,
        )
        return session, result

    async def login(
        self,
        user_id: str,
        device_id: str | None,
        display_name: str | None,
        *,
        refreshable: bool,
    ) -> LoginResult:
        session, result = self.new_login(user_id, device_id, display_name, refreshable=refreshable)
        await self._accounts.create_session(user_id, session, self._now_ms())
        return result

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        old = await self._accounts.get_refresh_token(token_sha256(refresh_token))
        if old is None:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Refresh token does not exist")
        now = self._now_ms()
        self._check_refreshable(old, now)
        session, access_token, new_refresh = self._new_tokens(
            old.device_id,
            None,
            refreshable=True,
            ultimate_expiry=old.ultimate_session_expiry_ts,
            now=now,
        )
        await self._accounts.rotate_refresh_token(old, session, now)
        body: dict[str, Any] = {"access_token": access_token, "refresh_token": new_refresh}
        if session.access.valid_until_ms is not None:
            body["expires_in_ms"] = session.access.valid_until_ms - now
        return body

    @staticmethod
    def _check_refreshable(old: RefreshTokenInfo, now: int) -> None:
        # Synapse's answers: 403 M_FORBIDDEN for a spent or expired refresh token. The spec
        # lists 401 for "unknown, or already used"; clients treat both as "log in again".
        if old.successor_used:
            raise forbidden("Refresh token isn't valid anymore")
        if old.expiry_ts is not None and old.expiry_ts <= now:
            raise forbidden("The supplied refresh token has expired")
        if old.ultimate_session_expiry_ts is not None and old.ultimate_session_expiry_ts <= now:
            raise forbidden("The session has expired and can no longer be refreshed")


def _plus(now: int, lifetime: int | None) -> int | None:
    return None if lifetime is None else now + lifetime


def _min(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


class LoginHandler:
    def __init__(
        self,
        *,
        server_name: str,
        accounts: AccountStore,
        passwords: PasswordHasher,
        sessions: Sessions,
        settings: AccountsConfig,
        account_limiter: Ratelimiter,
        failed_attempts: Ratelimiter,
        delete_devices: Callable[[str, list[str]], Any],
    ) -> None:
        self._server_name = server_name
        self._accounts = accounts
        self._passwords = passwords
        self._sessions = sessions
        self._settings = settings
        self._account_limiter = account_limiter
        self._failed_attempts = failed_attempts
        self._delete_devices = delete_devices

    def flows(self) -> list[dict[str, Any]]:
        # Only what is implemented: no m.login.token, SSO or application services yet.
        return [{"type": LOGIN_PASSWORD}] if self._settings.password_login_enabled else []

    async def login(self, body: dict[str, Any]) -> dict[str, Any]:
        login_type = body.get("type")
        if login_type is None:
            raise missing_param("Missing 'type'")
        if login_type != LOGIN_PASSWORD or not self._settings.password_login_enabled:
            raise MatrixError(400, "M_UNKNOWN", f"Unknown login type {login_type!r}")
        device_id = optional_string(body, "device_id", MAX_DEVICE_ID_LENGTH)
        display_name = optional_string(
            body, "initial_device_display_name", MAX_DEVICE_DISPLAY_NAME_LENGTH
        )
        wants_refresh = optional_bool(body, "refresh_token")
        password = body.get("password")
        if password is None:
            raise missing_param("Missing 'password'")
        if not isinstance(password, str):
            raise MatrixError(400, "M_INVALID_PARAM", "'password' must be a string")
        named = identified_user(body, self._server_name)
        if named is None:
            raise missing_param("Missing 'identifier'")

        limiter_key = named.lower()
        take_failure_slot(self._failed_attempts, limiter_key)
        user_id = await self._check_password(named, password)
        if user_id is None:
            raise forbidden("Invalid username or password")
        give_back_failure_slot(self._failed_attempts, limiter_key)
        retry_after_ms = self._account_limiter.attempt(user_id.lower())
        if retry_after_ms is not None:
            raise limit_exceeded(retry_after_ms)
        result = await self._sessions.login(
            user_id, device_id, display_name, refreshable=wants_refresh
        )
        return result.to_json(self._server_name)

    async def _check_password(self, named: str, password: str) -> str | None:
        """The user ID whose password this is, or None."""
        try:
            parsed = UserID.parse(named)
        except ValueError:
            return None
        if parsed.domain != self._server_name:
            return None
        user = await self._accounts.get_user(named)
        if user is None and named != named.lower():
            # Localparts are registered in lower case; clients often capitalise them.
            user = await self._accounts.get_user(named.lower())
        if user is None:
            return None
        if user.deactivated:
            # Checked before the password, as Synapse: the hash is gone anyway.
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        if not await self._passwords.check(password, user.password_hash):
            return None
        return user.user_id

    async def logout(self, requester: Requester) -> None:
        """End this session: its device (and so all the device's tokens), or its token."""
        if requester.device_id is not None:
            await self._delete_devices(requester.user_id, [requester.device_id])
        elif requester.access_token_id is not None:
            await self._accounts.delete_access_token(requester.access_token_id)

    async def logout_all(self, requester: Requester) -> None:
        await self._accounts.delete_all_sessions(requester.user_id)
