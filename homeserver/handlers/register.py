"""Registration: the client's ``/register`` (with user-interactive auth), guests, and
Synapse's shared-secret admin registration (``register_new_matrix_user``)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any

from homeserver.config.model import AccountsConfig
from homeserver.errors import MatrixError, forbidden, limit_exceeded, missing_param
from homeserver.handlers.login import (
    MAX_DEVICE_DISPLAY_NAME_LENGTH,
    MAX_DEVICE_ID_LENGTH,
    Sessions,
    optional_bool,
    optional_string,
)
from homeserver.handlers.uia import (
    LOGIN_DUMMY,
    LOGIN_REGISTRATION_TOKEN,
    UserInteractiveAuth,
    is_token_usable,
)
from homeserver.passwords import PasswordHasher
from homeserver.ratelimit import Ratelimiter
from homeserver.types import is_valid_new_localpart
from storage.accounts import AccountStore, NewUser, UserInUse
from storage.registration_tokens import RegistrationTokenStore, RegistrationTokenUnusable

MAX_PASSWORD_LENGTH = 512  # as Synapse
MAX_USER_ID_LENGTH = 255
# Generated localparts (guests, registrations without a username) are all digits, which is
# why nobody may choose an all-digit one.
_GENERATED_LOCALPART_DIGITS = 12
_GENERATE_ATTEMPTS = 10


class RegistrationHandler:
    def __init__(
        self,
        *,
        server_name: str,
        enable_registration: bool,
        enable_registration_without_verification: bool,
        settings: AccountsConfig,
        accounts: AccountStore,
        registration_tokens: RegistrationTokenStore,
        passwords: PasswordHasher,
        sessions: Sessions,
        uia: UserInteractiveAuth,
        limiter: Ratelimiter,
        now_ms: Callable[[], int],
    ) -> None:
        self._server_name = server_name
        self._settings = settings
        # As Synapse: open registration needs some verification, or explicitly none.
        self.registration_open = enable_registration and (
            enable_registration_without_verification or settings.registration_requires_token
        )
        self._accounts = accounts
        self._registration_tokens = registration_tokens
        self._passwords = passwords
        self._sessions = sessions
        self._uia = uia
        self._limiter = limiter
        self._now_ms = now_ms

    @property
    def flows(self) -> list[list[str]]:
        if self._settings.registration_requires_token:
            return [[LOGIN_REGISTRATION_TOKEN, LOGIN_DUMMY]]
        return [[LOGIN_DUMMY]]

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self._server_name}"

    async def check_username(self, localpart: str) -> None:
        """Raise M_INVALID_USERNAME or M_USER_IN_USE unless a new user may take ``localpart``."""
        if not is_valid_new_localpart(localpart):
            raise MatrixError(
                400,
                "M_INVALID_USERNAME",
                "User ID can only contain characters a-z, 0-9, or '=_-./+'",
            )
        if localpart.startswith("_"):
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID may not begin with _")
        if localpart.isdigit():
            raise MatrixError(
                400, "M_INVALID_USERNAME", "Numeric user IDs are reserved for guest users."
            )
        if len(self.user_id(localpart)) > MAX_USER_ID_LENGTH:
            raise MatrixError(
                400, "M_INVALID_USERNAME", f"User ID may not be longer than {MAX_USER_ID_LENGTH}"
            )
        if await self._accounts.user_exists(self.user_id(localpart)):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")

    async def token_validity(self, token: str) -> bool:
        if not self._settings.registration_requires_token:
            raise forbidden("Registration tokens are not enabled")
        stored = await self._registration_tokens.get(token)
        return stored is not None and is_token_usable(
            stored, self._uia.pending_uses(token), self._now_ms()
        )

    async def register(
        self, body: dict[str, Any], *, kind: str, client_ip: str, method: str, uri: str
    ) -> dict[str, Any]:
        if kind == "guest":
            return await self._register_guest(body, client_ip)
        if kind != "user":
            raise MatrixError(400, "M_INVALID_PARAM", f"Unknown registration kind {kind!r}")
        if not self.registration_open:
            raise forbidden("Registration has been disabled")
        # Checked before user-interactive auth, so a client learns of a bad or taken
        # username before it goes through the stages.
        params = _RegisterParams({k: v for k, v in body.items() if k != "auth"})
        if params.localpart is not None:
            await self.check_username(params.localpart)

        result = await self._uia.authenticate(body, method=method, uri=uri, flows=self.flows)
        params = _RegisterParams(result.clientdict)
        if params.password is None:
            raise missing_param("Missing params: password")
        retry_after_ms = self._limiter.attempt(client_ip)
        if retry_after_ms is not None:
            raise limit_exceeded(retry_after_ms)
        password_hash = await self._passwords.hash(params.password)
        token = result.completed.get(LOGIN_REGISTRATION_TOKEN)
        response = await self._create(
            params.localpart,
            password_hash=password_hash,
            is_guest=False,
            registration_token=token if isinstance(token, str) else None,
            params=params,
        )
        self._uia.finish(result.session_id)
        return response

    async def _register_guest(self, body: dict[str, Any], client_ip: str) -> dict[str, Any]:
        if not self._settings.allow_guest_access:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled")
        params = _RegisterParams(body)
        retry_after_ms = self._limiter.attempt(client_ip)
        if retry_after_ms is not None:
            raise limit_exceeded(retry_after_ms)
        return await self._create(
            None, password_hash=None, is_guest=True, registration_token=None, params=params
        )

    async def _create(
        self,
        localpart: str | None,
        *,
        password_hash: str | None,
        is_guest: bool,
        registration_token: str | None,
        params: _RegisterParams,
        admin: bool = False,
        user_type: str | None = None,
        displayname: str | None = None,
    ) -> dict[str, Any]:
        for _ in range(_GENERATE_ATTEMPTS):
            chosen = localpart or _generated_localpart()
            user_id = self.user_id(chosen)
            user = NewUser(
                user_id=user_id,
                password_hash=password_hash,
                # As Synapse: a new user's display name is their localpart (not for guests).
                displayname=None if is_guest else (displayname or chosen),
                is_guest=is_guest,
                admin=admin,
                user_type=user_type,
                registration_token=registration_token,
            )
            session = login = None
            if not params.inhibit_login:
                session, login = self._sessions.new_login(
                    user_id,
                    params.device_id,
                    params.device_display_name,
                    refreshable=params.refresh_token,
                )
            try:
                await self._accounts.register(user, session, self._now_ms())
            except UserInUse:
                if localpart is not None:
                    raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.") from None
                continue  # a generated localpart collided: draw another
            except RegistrationTokenUnusable:
                raise MatrixError(
                    401, "M_FORBIDDEN", "The registration token is no longer valid"
                ) from None
            if login is None:
                return {"user_id": user_id, "home_server": self._server_name}
            return login.to_json(self._server_name)
        raise MatrixError(500, "M_UNKNOWN", "Could not generate a free user ID")

    async def register_by_admin(
        self,
        localpart: str,
        password: str,
        *,
        admin: bool,
        user_type: str | None,
        displayname: str | None,
    ) -> dict[str, Any]:
        """Register through the shared-secret admin API (registration settings do not apply)."""
        await self.check_username(localpart)
        password_hash = await self._passwords.hash(password)
        return await self._create(
            localpart,
            password_hash=password_hash,
            is_guest=False,
            registration_token=None,
            params=_RegisterParams({}),
            admin=admin,
            user_type=user_type,
            displayname=displayname,
        )


class _RegisterParams:
    """The /register body's fields, type-checked."""

    def __init__(self, body: dict[str, Any]) -> None:
        username = body.get("username")
        if username is not None and not isinstance(username, str):
            raise MatrixError(400, "M_INVALID_USERNAME", "'username' must be a string")
        # As Synapse: usernames are case-insensitive at registration.
        self.localpart = username.lower() if username else None
        password = body.get("password")
        if password is not None and (
            not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH
        ):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid password")
        self.password: str | None = password
        self.device_id = optional_string(body, "device_id", MAX_DEVICE_ID_LENGTH)
        self.device_display_name = optional_string(
            body, "initial_device_display_name", MAX_DEVICE_DISPLAY_NAME_LENGTH
        )
        self.inhibit_login = optional_bool(body, "inhibit_login")
        self.refresh_token = optional_bool(body, "refresh_token")


def _generated_localpart() -> str:
    return str(secrets.randbelow(10**_GENERATED_LOCALPART_DIGITS - 1) + 1)


# --- shared-secret registration -------------------------------------------------------------

NONCE_LIFETIME_MS = 60_000  # as Synapse
MAX_NONCES = 10_000
USER_TYPES = ("support", "bot")


def registration_mac(
    shared_secret: str,
    nonce: str,
    username: str,
    password: str,
    admin: bool,
    user_type: str | None = None,
) -> str:
    """The HMAC-SHA1 ``register_new_matrix_user`` sends (hex)."""
    mac = hmac.new(shared_secret.encode("utf-8"), digestmod=hashlib.sha1)
    mac.update(nonce.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(username.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(password.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    if user_type:
        mac.update(b"\x00")
        mac.update(user_type.encode("utf-8"))
    return mac.hexdigest()


class SharedSecretRegistration:
    def __init__(
        self,
        shared_secret: str | None,
        registration: RegistrationHandler,
        now_ms: Callable[[], int],
    ) -> None:
        self._secret = shared_secret
        self._registration = registration
        self._now_ms = now_ms
        self._nonces: dict[str, int] = {}  # nonce -> issued at, in issue order

    def _check_enabled(self) -> str:
        if not self._secret:
            raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
        return self._secret

    def new_nonce(self) -> str:
        self._check_enabled()
        now = self._now_ms()
        self._expire(now)
        while len(self._nonces) >= MAX_NONCES:
            del self._nonces[next(iter(self._nonces))]
        nonce = secrets.token_hex(32)
        self._nonces[nonce] = now
        return nonce

    def _expire(self, now: int) -> None:
        for nonce, issued in list(self._nonces.items()):
            if issued + NONCE_LIFETIME_MS > now:
                break
            del self._nonces[nonce]

    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        secret = self._check_enabled()
        self._expire(self._now_ms())
        nonce = body.get("nonce")
        if not isinstance(nonce, str):
            raise MatrixError(400, "M_MISSING_PARAM", "nonce must be specified")
        # Each nonce is good for one attempt, right or wrong.
        if self._nonces.pop(nonce, None) is None:
            raise MatrixError(400, "M_UNKNOWN", "unrecognised nonce")
        username = body.get("username")
        if not isinstance(username, str) or not username or "\x00" in username:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid username")
        password = body.get("password")
        if (
            not isinstance(password, str)
            or not password
            or "\x00" in password
            or len(password) > MAX_PASSWORD_LENGTH
        ):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid password")
        admin = body.get("admin", False)
        if not isinstance(admin, bool):
            raise MatrixError(400, "M_INVALID_PARAM", "'admin' must be true or false")
        user_type = body.get("user_type")
        if user_type is not None and user_type not in USER_TYPES:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid user type")
        displayname = body.get("displayname")
        if displayname is not None and not isinstance(displayname, str):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid displayname")
        got_mac = body.get("mac")
        if not isinstance(got_mac, str):
            raise MatrixError(400, "M_MISSING_PARAM", "mac must be specified")
        want = registration_mac(secret, nonce, username, password, admin, user_type)
        if not hmac.compare_digest(want.encode(), got_mac.lower().encode("utf-8")):
            raise forbidden("HMAC incorrect")
        return await self._registration.register_by_admin(
            username.lower(),
            password,
            admin=admin,
            user_type=user_type,
            displayname=displayname or None,
        )
