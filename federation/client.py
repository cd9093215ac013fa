"""Outbound federation requests: discovery, TLS, the IP range filter, X-Matrix signing.

``FederationClient.get_json/put_json/post_json/delete_json(destination, path, ...)`` send
one signed request to another server and return its JSON body, or raise:

- ``HttpResponseError`` — the server answered with a non-2xx status (its errcode, if any);
- ``FederationDeniedError`` — ``federation_domain_whitelist`` does not allow the server;
- ``FederationError`` — anything else: no address, every address blocked by
  ``ip_range_blacklist``, connection or TLS failure, timeout, a response that is not JSON.

Paths are percent-encoded by the caller (``federation_path`` does it for templates); the
path and query string are sent, and signed, exactly as given.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from signedjson.types import SigningKey
from twisted.internet import defer
from twisted.web.http_headers import Headers

from federation.discovery import (
    WELL_KNOWN_MAX_SIZE,
    DiscoveryError,
    Resolver,
    ServerDiscovery,
    WellKnownFetchError,
    WellKnownResolver,
    WellKnownResponse,
    split_server_name,
)
from federation.ip_filter import IPFilter
from federation.x_matrix import sign_request
from homeserver import __version__

if TYPE_CHECKING:
    from federation.outbound_http import FederationTransport

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 60.0
# The scheme of URIs handed to our agent: its netloc is a server name to discover, not a host.
_SCHEME = b"matrix-federation"
USER_AGENT = f"Hearth/{__version__}"


class FederationError(Exception):
    """An outbound federation request failed without an HTTP answer from the server."""

    def __init__(self, destination: str, message: str) -> None:
        super().__init__(f"{destination}: {message}")
        self.destination = destination


class FederationDeniedError(FederationError):
    """``federation_domain_whitelist`` does not include the destination."""

    def __init__(self, destination: str) -> None:
        super().__init__(destination, "not in federation_domain_whitelist")


class HttpResponseError(FederationError):
    """The remote server answered with a non-2xx status."""

    def __init__(self, destination: str, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        self.response_json: Any = None
        try:
            self.response_json = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            pass
        parsed = self.response_json if isinstance(self.response_json, dict) else {}
        errcode, error = parsed.get("errcode"), parsed.get("error")
        self.errcode: str | None = errcode if isinstance(errcode, str) else None
        self.error: str | None = error if isinstance(error, str) else None
        super().__init__(
            destination, f"HTTP {status} {self.errcode or ''} {self.error or ''}".rstrip()
        )


def federation_path(template: str, *params: str) -> str:
    """``template`` with each ``%s`` replaced by a fully percent-encoded parameter."""
    return template % tuple(quote(p, safe="") for p in params)


def encode_query(args: Mapping[str, str | Sequence[str]] | None) -> str:
    if not args:
        return ""
    pairs: list[tuple[str, str]] = []
    for name, value in args.items():
        if isinstance(value, str):
            pairs.append((name, value))
        else:
            pairs.extend((name, v) for v in value)
    return urlencode(pairs, quote_via=quote)


@dataclass(frozen=True)
class FederationResponse:
    status: int
    headers: Mapping[str, str]  # lower-cased names, last value
    body: bytes


class FederationClient:
    """Signed requests to other homeservers."""

    def __init__(
        self,
        reactor: Any,
        server_name: str,
        signing_key: SigningKey,
        *,
        resolver: Resolver,
        ip_filter: IPFilter,
        verify_certificates: bool = True,
        domain_whitelist: Collection[str] | None = None,
        well_known_port: int | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        """``well_known_port`` replaces port 443 for ``.well-known`` fetches (tests only)."""
        self._reactor = reactor
        self.server_name = server_name
        self._signing_key = signing_key
        self._domain_whitelist = (
            frozenset(domain_whitelist) if domain_whitelist is not None else None
        )  # an empty list allows no server at all, as in Synapse
        self._user_agent = user_agent.encode("ascii")
        self.discovery = ServerDiscovery(
            resolver, WellKnownResolver(self._fetch_well_known, reactor.seconds)
        )
        self._transport_args = (resolver, ip_filter, verify_certificates, well_known_port)
        self._transport_instance: FederationTransport | None = None

    def _transport(self) -> FederationTransport:
        """The pool and agents, built on the first request: until then the TLS stack is
        not loaded at all (see ``homeserver.tls``)."""
        if self._transport_instance is None:
            from federation.outbound_http import FederationTransport

            self._transport_instance = FederationTransport(
                self._reactor, self.discovery, *self._transport_args
            )
        return self._transport_instance

    async def close(self) -> None:
        """Close the kept-alive connections (at shutdown)."""
        if self._transport_instance is not None:
            await self._transport_instance.close()

    # --- JSON requests ------------------------------------------------------------------

    async def get_json(
        self,
        destination: str,
        path: str,
        args: Mapping[str, str | Sequence[str]] | None = None,
        timeout: float | None = None,
    ) -> Any:
        return await self._json_request("GET", destination, path, args, None, timeout)

    async def put_json(
        self,
        destination: str,
        path: str,
        args: Mapping[str, str | Sequence[str]] | None = None,
        data: Any = None,
        timeout: float | None = None,
    ) -> Any:
        return await self._json_request(
            "PUT", destination, path, args, {} if data is None else data, timeout
        )

    async def post_json(
        self,
        destination: str,
        path: str,
        args: Mapping[str, str | Sequence[str]] | None = None,
        data: Any = None,
        timeout: float | None = None,
    ) -> Any:
        return await self._json_request(
            "POST", destination, path, args, {} if data is None else data, timeout
        )

    async def delete_json(
        self,
        destination: str,
        path: str,
        args: Mapping[str, str | Sequence[str]] | None = None,
        timeout: float | None = None,
    ) -> Any:
        return await self._json_request("DELETE", destination, path, args, None, timeout)

    async def _json_request(
        self,
        method: str,
        destination: str,
        path: str,
        args: Mapping[str, str | Sequence[str]] | None,
        data: Any,
        timeout: float | None,
    ) -> Any:
        response = await self.request(method, destination, path, args, data, timeout)
        try:
            return json.loads(response.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise FederationError(destination, f"{method} {path}: response is not JSON") from None

    # --- the request itself ---------------------------------------------------------------

    async def request(
        self,
        method: str,
        destination: str,
        path: str,
        args: Mapping[str, str | Sequence[str]] | None = None,
        data: Any = None,
        timeout: float | None = None,
        max_size: int | None = None,
    ) -> FederationResponse:
        """Send one signed request; the raw 2xx response (HttpResponseError otherwise).

        ``data`` (JSON-serialisable, or None for no body) is sent and signed as the content.
        ``max_size``: a body longer than this many bytes is a ``ResponseTooLarge``, and is
        never held in memory whole.
        """
        if not path.startswith("/"):
            raise ValueError(f"path {path!r} must start with /")
        if self._domain_whitelist is not None and destination not in self._domain_whitelist:
            raise FederationDeniedError(destination)
        try:
            split_server_name(destination)
        except DiscoveryError as e:
            raise FederationError(destination, str(e)) from None
        query = encode_query(args)
        uri = path + ("?" + query if query else "")
        body = None if data is None else json.dumps(data, separators=(",", ":")).encode("utf-8")
        authorization = sign_request(
            self._signing_key, self.server_name, destination, method, uri, data
        )
        headers = Headers(
            {
                b"Authorization": [authorization.encode("utf-8")],
                b"User-Agent": [self._user_agent],
            }
        )
        if body is not None:
            headers.setRawHeaders(b"Content-Type", [b"application/json"])
        try:
            # Discovery first: it names the Host header (the delegated server name).
            address = await self.discovery.resolve(destination)
        except DiscoveryError as e:
            raise FederationError(destination, str(e)) from None
        headers.setRawHeaders(b"Host", [address.host_header.encode("idna")])
        url = f"{_SCHEME.decode()}://{destination}{uri}"
        timeout = DEFAULT_TIMEOUT_SECONDS if timeout is None else timeout
        from federation import outbound_http

        try:
            response = await self._transport().http.request(
                method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=timeout,
                reactor=self._reactor,
                unbuffered=max_size is not None,
            )
            if max_size is None:
                content: bytes = await response.content()
            else:
                content = await outbound_http.collect_at_most(
                    response,
                    max_size,
                    lambda: ResponseTooLarge(destination, f"response larger than {max_size} bytes"),
                )
        except FederationError:
            raise
        except defer.CancelledError:
            raise FederationError(
                destination, f"{method} {path}: no response within {timeout}s"
            ) from None
        except Exception as e:
            raise FederationError(destination, f"{method} {path}: {_describe(e)}") from None
        status = int(response.code)
        logger.debug("%s %s%s -> %d", method, destination, path, status)
        if not 200 <= status < 300:
            raise HttpResponseError(destination, status, content)
        return FederationResponse(status, _header_map(response.headers), content)

    async def _fetch_well_known(self, hostname: str) -> WellKnownResponse:
        from federation import outbound_http

        url = f"https://{hostname}/.well-known/matrix/server"
        try:
            response = await self._transport().well_known_http.get(
                url,
                headers=Headers({b"User-Agent": [self._user_agent]}),
                allow_redirects=False,  # RedirectAgent below follows them, with our limit
                timeout=DEFAULT_TIMEOUT_SECONDS,
                unbuffered=True,
                reactor=self._reactor,
            )
            body = await outbound_http.collect_at_most(
                response,
                WELL_KNOWN_MAX_SIZE,
                lambda: WellKnownFetchError(f"larger than {WELL_KNOWN_MAX_SIZE} bytes"),
            )
        except WellKnownFetchError:
            raise
        except Exception as e:
            raise WellKnownFetchError(_describe(e)) from None
        return WellKnownResponse(int(response.code), _header_map(response.headers), body)


class ResponseTooLarge(FederationError):
    """The response body is longer than the caller allowed."""


def _header_map(headers: Headers) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): values[-1].decode("latin-1")
        for name, values in headers.getAllRawHeaders()
    }


def _describe(error: BaseException) -> str:
    """Twisted's connection errors often wrap the useful exception in a list of failures."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(str(getattr(r, "value", r)) for r in reasons)
    return str(error) or type(error).__name__
