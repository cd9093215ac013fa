"""Who is asking: access tokens to ``Requester``s, for every authenticated client route.

The HTTP layer calls ``Authenticator.authenticate`` for routes declared ``Auth.USER`` or
``Auth.OPTIONAL``. Handlers never import ``rest/``, so the request and route are described
here by the little this module reads of them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Protocol

from homeserver.errors import MatrixError, forbidden, missing_token, unknown_token
from homeserver.types import Requester
from storage.accounts import AccountStore, token_sha256

# Endpoints a guest may use (the spec's Guest Access module, "Client behaviour"), as
# (method, path after /_matrix/client/<release>) with every path parameter written {}.
GUEST_ENDPOINTS = frozenset(
    {
        ("GET", "/rooms/{}/state"),
        ("GET", "/rooms/{}/context/{}"),
        ("GET", "/rooms/{}/event/{}"),
        ("GET", "/rooms/{}/state/{}/{}"),
        ("GET", "/rooms/{}/state/{}"),
        ("GET", "/rooms/{}/messages"),
        ("GET", "/rooms/{}/members"),
        ("GET", "/rooms/{}/initialSync"),
        ("GET", "/sync"),
        ("GET", "/events"),
        ("GET", "/media/download/{}/{}"),
        ("GET", "/media/download/{}/{}/{}"),
        ("GET", "/media/thumbnail/{}/{}"),
        ("POST", "/rooms/{}/join"),
        ("POST", "/join/{}"),
        ("POST", "/rooms/{}/leave"),
        ("PUT", "/rooms/{}/send/{}/{}"),
        ("PUT", "/rooms/{}/state/{}/{}"),
        ("PUT", "/rooms/{}/state/{}"),
        ("PUT", "/sendToDevice/{}/{}"),
        # Only the display name: the profile handler refuses guests every other field.
        ("PUT", "/profile/{}/{}"),
        ("DELETE", "/profile/{}/{}"),
        ("GET", "/devices"),
        ("GET", "/devices/{}"),
        ("PUT", "/devices/{}"),
        ("GET", "/account/whoami"),
        ("POST", "/keys/upload"),
        ("POST", "/keys/query"),
        ("POST", "/keys/claim"),
        # Not in the spec's list; Synapse lets guests use them too.
        ("POST", "/logout"),
        ("GET", "/capabilities"),
        ("GET", "/publicRooms"),
        ("POST", "/publicRooms"),
        ("GET", "/voip/turnServer"),  # the handler applies turn_allow_guests
    }
)
_CLIENT_PREFIX = re.compile(r"^/_matrix/client/[^/]+")
_PLACEHOLDER = re.compile(r"\{[^}]*\}")


def _guest_key(method: str, pattern: str) -> tuple[str, str]:
    return method, _PLACEHOLDER.sub("{}", _CLIENT_PREFIX.sub("", pattern, count=1))


def guest_allowed(method: str, pattern: str) -> bool:
    if method == "HEAD":
        method = "GET"
    return _guest_key(method, pattern) in GUEST_ENDPOINTS


class AuthRequest(Protocol):
    """What authentication reads of a request (``rest.request.HttpRequest`` has it)."""

    method: str
    client_ip: str

    def header(self, name: str) -> str | None: ...

    def query_string(self, name: str, default: str | None = None) -> str | None: ...


class AuthRoute(Protocol):
    """What authentication reads of a route (``rest.router.Route`` has it)."""

    @property
    def pattern(self) -> str: ...

    @property
    def auth(self) -> enum.Enum: ...


SeenCallback = Callable[[str, str, str, str | None], None]
"""Called with (user_id, device_id, ip, user agent) for each authenticated request."""


def access_token_of(request: AuthRequest) -> str | None:
    """The access token of a request: the Authorization header, else the query parameter."""
    header = request.header("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise MatrixError(401, "M_MISSING_TOKEN", "Invalid Authorization header")
        return token.strip()
    return request.query_string("access_token")


class Authenticator:
    def __init__(
        self, accounts: AccountStore, now_ms: Callable[[], int], on_seen: SeenCallback
    ) -> None:
        self._accounts = accounts
        self._now_ms = now_ms
        self._on_seen = on_seen

    async def authenticate(self, request: AuthRequest, route: AuthRoute) -> Requester | None:
        """The requester, or None for an optional-auth route called without a token.

        Raises M_MISSING_TOKEN (a required token is absent), M_UNKNOWN_TOKEN (unknown,
        logged out, expired — then with ``soft_logout: true`` — or of a deactivated user) and
        M_GUEST_ACCESS_FORBIDDEN (a guest on an endpoint guests may not use).
        """
        token = access_token_of(request)
        if token is None:
            # route.auth is rest.router.Auth; compared by value so this module need not
            # import the HTTP layer.
            if route.auth.value == "optional":
                return None
            raise missing_token()
        sha256 = token_sha256(token)
        info = await self._accounts.get_token(sha256)
        if info is None:
            raise unknown_token()
        if info.valid_until_ms is not None and info.valid_until_ms <= self._now_ms():
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Access token has expired", soft_logout=True)
        if info.is_guest and not guest_allowed(request.method, route.pattern):
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed")
        if info.refresh_token_id is not None and not info.used:
            # The first use of a refreshed token spends the refresh token before it.
            info = await self._accounts.mark_token_used(info, sha256)
        if info.device_id is not None:
            self._on_seen(
                info.user_id, info.device_id, request.client_ip, request.header("user-agent")
            )
        return Requester(
            user_id=info.user_id,
            device_id=info.device_id,
            access_token_id=info.token_id,
            is_guest=info.is_guest,
        )

    async def is_admin(self, user_id: str) -> bool:
        user = await self._accounts.get_user(user_id)
        return user is not None and user.admin and not user.deactivated

    async def require_admin(self, requester: Requester) -> None:
        """For the admin API: 403 M_FORBIDDEN unless the requester is a server admin."""
        if not await self.is_admin(requester.user_id):
            raise forbidden("You are not a server admin")
