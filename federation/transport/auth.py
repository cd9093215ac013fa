"""Authentication of inbound federation requests (``Authorization: X-Matrix ...``).

``FederationAuthenticator.authenticate`` is the HTTP layer's authenticator for
``Auth.FEDERATION`` routes: it runs before the handler and sets ``request.requester`` to the
origin server's name. ``add_federation_route`` registers a handler behind it and behind the
per-origin ``rc_federation`` limiter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol

from federation.acl import ServerAclChecker
from federation.keyring import KeyringError
from federation.ratelimit import FederationRateLimiter
from federation.x_matrix import XMatrixParseError, parse_header, signed_request_json
from homeserver.errors import MatrixError
from rest.request import HttpRequest
from rest.router import Auth, Handler, Route, Router

logger = logging.getLogger(__name__)


class RequestVerifier(Protocol):
    async def verify_json_for_server(
        self, server_name: str, json_object: dict[str, Any], min_valid_ts: int
    ) -> None:
        """Raise KeyringError unless ``json_object`` carries a valid signature of
        ``server_name`` made with a key valid at ``min_valid_ts``."""
        ...


def _unauthorized(error: str, status: int = 401) -> MatrixError:
    return MatrixError(status, "M_UNAUTHORIZED", error)


class FederationAuthenticator:
    def __init__(
        self,
        server_name: str,
        keyring: RequestVerifier,
        now_ms: Callable[[], int],
        domain_whitelist: Collection[str] | None = None,
    ) -> None:
        self.server_name = server_name
        self._keyring = keyring
        self._now_ms = now_ms
        self._domain_whitelist = (
            frozenset(domain_whitelist) if domain_whitelist is not None else None
        )  # an empty list allows no server at all, as in Synapse
        # Set by the app: a room's server ACL applies to every request whose path names
        # the room, whatever the endpoint.
        self.acl: ServerAclChecker | None = None

    async def authenticate(self, request: HttpRequest, route: Route | None = None) -> str:
        """The origin server of a correctly signed request; MatrixError otherwise.

        As Synapse: a missing header, a destination other than us or a bad signature is
        401 M_UNAUTHORIZED, a header that does not parse 400 M_UNAUTHORIZED, an origin
        outside ``federation_domain_whitelist`` 403 M_FORBIDDEN, and so is an origin the
        server ACL of the room named in the path (``{roomId}``) denies.
        """
        header = request.header("Authorization")
        if not header or not header.lower().startswith("x-matrix"):
            raise _unauthorized("Missing Authorization headers")
        try:
            auth = parse_header(header)
        except XMatrixParseError as e:
            logger.info("malformed X-Matrix header from %s: %s", request.client_ip, e)
            raise _unauthorized("Malformed Authorization header", status=400) from None
        if auth.destination is not None and auth.destination != self.server_name:
            raise _unauthorized(f"Destination mismatch in auth header: {auth.destination!r}")
        if self._domain_whitelist is not None and auth.origin not in self._domain_whitelist:
            raise MatrixError(403, "M_FORBIDDEN", f"Federation denied with {auth.origin}")
        content: Any = None
        if request.method in ("PUT", "POST"):
            try:
                content = request.json()
            except MatrixError as e:
                logger.info("refusing a request from %s: %s", auth.origin, e.error)
                raise
        signed = signed_request_json(auth, request.method, request.uri, self.server_name, content)
        try:
            await self._keyring.verify_json_for_server(auth.origin, signed, self._now_ms())
        except KeyringError as e:
            logger.info("rejecting request from %s: %s", auth.origin, e)
            raise _unauthorized(f"Failed to verify the request signature: {e}") from None
        room_id = request.path_params.get("roomId")
        if room_id is not None and self.acl is not None:
            await self.acl.check(auth.origin, room_id)
        return auth.origin


def add_federation_route(
    router: Router,
    limiter: FederationRateLimiter | None,
    methods: str | Iterable[str],
    patterns: str | Iterable[str],
    handler: Handler,
) -> None:
    """Register ``handler`` for X-Matrix-signed requests; with a limiter, each origin's
    requests run through ``rc_federation`` (``request.requester`` is the origin)."""
    if limiter is None:
        router.add(methods, patterns, handler, auth=Auth.FEDERATION)
        return
    bound = limiter

    async def limited(request: HttpRequest) -> Any:
        async with bound.limit(str(request.requester)):
            return await handler(request)

    router.add(methods, patterns, limited, auth=Auth.FEDERATION)
