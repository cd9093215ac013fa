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
from typing import Any
from urllib.parse import quote, urlencode

import treq
from OpenSSL import SSL
from signedjson.types import SigningKey
from treq.client import HTTPClient
from twisted.internet import defer, ssl
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.web.client import URI, Agent, HTTPConnectionPool, RedirectAgent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer  # type: ignore[import-untyped]

from federation.discovery import (
    WELL_KNOWN_MAX_REDIRECTS,
    WELL_KNOWN_MAX_SIZE,
    DiscoveryError,
    Resolver,
    ServerDiscovery,
    WellKnownFetchError,
    WellKnownResolver,
    WellKnownResponse,
    is_ip_literal,
    split_server_name,
)
from federation.ip_filter import IPFilter
from federation.x_matrix import sign_request
from homeserver import __version__

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 10.0
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


@implementer(IOpenSSLClientConnectionCreator)
class _NoVerifyCreator:
    """TLS without certificate checks (``federation_verify_certificates: false``); still
    sends SNI so name-based virtual hosts pick the right certificate."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        self._context = ssl.CertificateOptions(verify=False).getContext()

    def clientConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        if not is_ip_literal(self._hostname):
            connection.set_tlsext_host_name(self._hostname.encode("idna"))
        connection.set_connect_state()
        return connection


class Connector:
    """Opens TLS connections to a host and port, checking every address it resolves to
    against the IP filter before connecting."""

    def __init__(
        self,
        reactor: Any,
        resolver: Resolver,
        ip_filter: IPFilter,
        verify_certificates: bool,
    ) -> None:
        self._reactor = reactor
        self._resolver = resolver
        self._ip_filter = ip_filter
        self._verify = verify_certificates

    def _tls_creator(self, tls_name: str) -> Any:
        if self._verify:
            return ssl.optionsForClientTLS(tls_name)
        return _NoVerifyCreator(tls_name)

    async def connect(
        self,
        label: str,
        targets: Sequence[tuple[str, int]],
        tls_name: str,
        factory: IProtocolFactory,
    ) -> IProtocol:
        """Connect ``factory`` to the first target address that is allowed and answers."""
        blocked: list[str] = []
        failures: list[str] = []
        for host, port in targets:
            addresses = [host] if is_ip_literal(host) else await self._resolver.resolve_host(host)
            if not addresses:
                failures.append(f"{host} has no address")
            for address in addresses:
                if self._ip_filter.is_blocked(address):
                    blocked.append(address)
                    continue
                endpoint_class = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
                tcp: Any = endpoint_class(
                    self._reactor, address, port, timeout=CONNECT_TIMEOUT_SECONDS
                )
                endpoint: Any = wrapClientTLS(self._tls_creator(tls_name), tcp)
                try:
                    protocol: IProtocol = await endpoint.connect(factory)
                    return protocol
                except defer.CancelledError:
                    raise
                except Exception as e:
                    failures.append(f"{address}:{port}: {e}")
        if blocked and not failures:
            raise FederationError(
                label, f"every address ({', '.join(blocked)}) is blocked by ip_range_blacklist"
            )
        reasons = failures + [f"{a} blocked by ip_range_blacklist" for a in blocked]
        raise FederationError(label, "cannot connect: " + "; ".join(reasons or ["no target"]))


@implementer(IStreamClientEndpoint)
class _DeferredEndpoint:
    def __init__(self, connect: Any) -> None:
        self._connect = connect

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        return defer.ensureDeferred(self._connect(factory))


@implementer(IAgentEndpointFactory)
class _FederationEndpointFactory:
    """Endpoints for ``matrix-federation://<server name>/...``: discovery, then connect."""

    def __init__(self, discovery: ServerDiscovery, connector: Connector) -> None:
        self._discovery = discovery
        self._connector = connector

    def endpointForURI(self, uri: URI) -> Any:
        server_name = uri.netloc.decode("ascii")

        async def connect(factory: IProtocolFactory) -> IProtocol:
            try:
                address = await self._discovery.resolve(server_name)
            except DiscoveryError as e:
                raise FederationError(server_name, str(e)) from None
            return await self._connector.connect(
                server_name, address.targets, address.tls_name, factory
            )

        return _DeferredEndpoint(connect)


@implementer(IAgentEndpointFactory)
class _WellKnownEndpointFactory:
    """Endpoints for ``https://<host>/.well-known/matrix/server`` and its redirects."""

    def __init__(self, connector: Connector, well_known_port: int | None) -> None:
        self._connector = connector
        self._well_known_port = well_known_port

    def endpointForURI(self, uri: URI) -> Any:
        host = uri.host.decode("ascii")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        port = uri.port
        if self._well_known_port is not None and port == 443:
            port = self._well_known_port

        async def connect(factory: IProtocolFactory) -> IProtocol:
            if uri.scheme != b"https":
                raise WellKnownFetchError(f"refusing to follow a redirect to {uri.toBytes()!r}")
            return await self._connector.connect(host, [(host, port)], host, factory)

        return _DeferredEndpoint(connect)


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
        connector = Connector(reactor, resolver, ip_filter, verify_certificates)
        self._pool = pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 5
        pool.cachedConnectionTimeout = 2 * 60
        well_known_agent: Any = RedirectAgent(
            Agent.usingEndpointFactory(
                reactor, _WellKnownEndpointFactory(connector, well_known_port), pool
            ),
            redirectLimit=WELL_KNOWN_MAX_REDIRECTS,
        )
        self._well_known_http = HTTPClient(well_known_agent)
        self.discovery = ServerDiscovery(
            resolver, WellKnownResolver(self._fetch_well_known, reactor.seconds)
        )
        self._http = HTTPClient(
            Agent.usingEndpointFactory(
                reactor, _FederationEndpointFactory(self.discovery, connector), pool
            )
        )

    async def close(self) -> None:
        """Close the kept-alive connections (at shutdown)."""
        await self._pool.closeCachedConnections()

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
        try:
            response = await self._http.request(
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
                content = await _collect_at_most(destination, response, max_size)
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
        url = f"https://{hostname}/.well-known/matrix/server"
        try:
            response = await self._well_known_http.get(
                url,
                headers=Headers({b"User-Agent": [self._user_agent]}),
                allow_redirects=False,  # RedirectAgent below follows them, with our limit
                timeout=DEFAULT_TIMEOUT_SECONDS,
                unbuffered=True,
                reactor=self._reactor,
            )
            chunks: list[bytes] = []
            size = 0

            def collect(data: bytes) -> None:
                nonlocal size
                size += len(data)
                if size > WELL_KNOWN_MAX_SIZE:
                    raise WellKnownFetchError(f"larger than {WELL_KNOWN_MAX_SIZE} bytes")
                chunks.append(data)

            await treq.collect(response, collect)
        except WellKnownFetchError:
            raise
        except Exception as e:
            raise WellKnownFetchError(_describe(e)) from None
        body = b"".join(chunks)
        return WellKnownResponse(int(response.code), _header_map(response.headers), body)


class ResponseTooLarge(FederationError):
    """The response body is longer than the caller allowed."""


async def _collect_at_most(destination: str, response: Any, max_size: int) -> bytes:
    chunks: list[bytes] = []
    size = 0

    def collect(data: bytes) -> None:
        nonlocal size
        size += len(data)
        if size > max_size:
            raise ResponseTooLarge(destination, f"response larger than {max_size} bytes")
        chunks.append(data)

    await treq.collect(response, collect)
    return b"".join(chunks)


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
