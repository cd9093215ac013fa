"""The account endpoints (client API and Synapse's admin API) in one place for the wiring."""

from __future__ import annotations

from homeserver.account_services import AccountServices
from rest.admin import register as admin_register
from rest.admin import registration_tokens as admin_registration_tokens
from rest.client import account, devices, login, logout, profile
from rest.client import register as client_register
from rest.router import Router


def register(router: Router, services: AccountServices) -> None:
    client_register.register(router, services.registration)
    login.register(router, services.login, services.sessions)
    logout.register(router, services.login)
    account.register(router, services.account)
    devices.register(router, services.devices)
    profile.register(router, services.profiles)
    admin_register.register(router, services.shared_secret_registration)
    admin_registration_tokens.register(
        router, services.registration_token_admin, services.authenticator
    )
