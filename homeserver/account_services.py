"""The accounts side of the server, wired by explicit construction: stores, password
hashing, user-interactive auth, the access-token authenticator and the account handlers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeserver.config import HomeserverConfig
from homeserver.handlers.account import AccountHandler
from homeserver.handlers.auth import Authenticator
from homeserver.handlers.devices import DeviceHandler
from homeserver.handlers.login import LoginHandler, Sessions
from homeserver.handlers.profile import MembershipSync, ProfileHandler
from homeserver.handlers.register import RegistrationHandler, SharedSecretRegistration
from homeserver.handlers.registration_tokens import RegistrationTokenAdmin
from homeserver.handlers.uia import UserInteractiveAuth
from homeserver.passwords import PasswordHasher
from homeserver.ratelimit import Ratelimiter
from storage.accounts import AccountStore
from storage.devices import DeviceStore
from storage.engine import Database
from storage.profiles import ProfileStore
from storage.registration_tokens import RegistrationTokenStore


class AccountServices:
    def __init__(
        self,
        config: HomeserverConfig,
        database: Database,
        reactor: Any,
        ratelimiters: Mapping[str, Ratelimiter],
        now_ms: Callable[[], int],
        membership_sync: MembershipSync,
    ) -> None:
        settings = config.accounts
        server_name = config.server_name
        self.account_store = AccountStore(database)
        self.device_store = DeviceStore(database)
        self.profile_store = ProfileStore(database)
        self.registration_token_store = RegistrationTokenStore(database)
        self.passwords = PasswordHasher(
            reactor, rounds=settings.bcrypt_rounds, pepper=settings.password_pepper
        )
        self.uia = UserInteractiveAuth(
            server_name=server_name,
            accounts=self.account_store,
            registration_tokens=self.registration_token_store,
            passwords=self.passwords,
            failed_attempts=ratelimiters["rc_login.failed_attempts"],
            password_enabled=settings.password_reauth_enabled,
            now_ms=now_ms,
        )
        self.devices = DeviceHandler(
            devices=self.device_store,
            accounts=self.account_store,
            uia=self.uia,
            reactor=reactor,
            now_ms=now_ms,
        )
        self.authenticator = Authenticator(self.account_store, now_ms, self.devices.record_seen)
        self.sessions = Sessions(self.account_store, settings, now_ms)
        self.login = LoginHandler(
            server_name=server_name,
            accounts=self.account_store,
            passwords=self.passwords,
            sessions=self.sessions,
            settings=settings,
            account_limiter=ratelimiters["rc_login.account"],
            failed_attempts=ratelimiters["rc_login.failed_attempts"],
            delete_devices=self.devices.delete_devices,
        )
        self.registration = RegistrationHandler(
            server_name=server_name,
            enable_registration=config.enable_registration,
            enable_registration_without_verification=(
                config.enable_registration_without_verification
            ),
            settings=settings,
            accounts=self.account_store,
            registration_tokens=self.registration_token_store,
            passwords=self.passwords,
            sessions=self.sessions,
            uia=self.uia,
            limiter=ratelimiters["rc_registration"],
            now_ms=now_ms,
        )
        self.shared_secret_registration = SharedSecretRegistration(
            config.registration_shared_secret, self.registration, now_ms
        )
        self.registration_token_admin = RegistrationTokenAdmin(
            self.registration_token_store, self.uia, now_ms
        )
        self.profiles = ProfileHandler(
            server_name=server_name,
            profiles=self.profile_store,
            membership_sync=membership_sync,
            enable_set_displayname=config.enable_set_displayname,
            enable_set_avatar_url=config.enable_set_avatar_url,
        )
        self.account = AccountHandler(
            accounts=self.account_store,
            passwords=self.passwords,
            uia=self.uia,
            membership_sync=membership_sync,
        )

    def set_membership_sync(self, membership_sync: MembershipSync) -> None:
        """Hand profile changes and deactivations to the rooms core."""
        self.profiles.membership_sync = membership_sync
        self.account.membership_sync = membership_sync

    async def stop(self) -> None:
        """Write what is still in memory (devices' last seen) before the database closes."""
        await self.devices.stop()
