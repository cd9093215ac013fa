"""The HTTP machinery behind ``FederationClient``: TLS, connecting through the IP filter,
the connection pool and the agents for federation and ``.well-known`` requests.

It lives apart from ``federation.client`` because importing it loads the TLS stack
(pyOpenSSL, cryptography: ~14 MiB), which a server that has not yet talked to another one
does not need; ``FederationClient`` imports it on its first outbound request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import treq
from OpenSSL import SSL
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
from twisted.web.iweb import IAgentEndpointFactory, IResponse
from zope.interface import implementer  # type: ignore[import-untyped]

from federation.client import FederationError
from federation.discovery import (
    WELL_KNOWN_MAX_REDIRECTS,
    DiscoveryError,
    Resolver,
    ServerDiscovery,
    WellKnownFetchError,
    is_ip_literal,
)
from federation.ip_filter import IPFilter
from homeserver.tls import load_tls

load_tls()

CONNECT_TIMEOUT_SECONDS = 10.0


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


class FederationTransport:
    """One connection pool shared by an agent for ``matrix-federation://<server name>``
    URIs (discovery, then TLS to the server) and one for ``.well-known`` fetches."""

    def __init__(
        self,
        reactor: Any,
        discovery: ServerDiscovery,
        resolver: Resolver,
        ip_filter: IPFilter,
        verify_certificates: bool,
        well_known_port: int | None,
    ) -> None:
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
        self.well_known_http = HTTPClient(well_known_agent)
        self.http = HTTPClient(
            Agent.usingEndpointFactory(
                reactor, _FederationEndpointFactory(discovery, connector), pool
            )
        )

    async def close(self) -> None:
        await self._pool.closeCachedConnections()


async def collect_at_most(
    response: IResponse, max_size: int, too_large: Callable[[], Exception]
) -> bytes:
    """The body of an unbuffered response; ``too_large()`` is raised as soon as it passes
    ``max_size`` bytes, so a huge body is never held in memory whole."""
    chunks: list[bytes] = []
    size = 0

    def on_data(data: bytes) -> None:
        nonlocal size
        size += len(data)
        if size > max_size:
            raise too_large()
        chunks.append(data)

    await treq.collect(response, on_data)
    return b"".join(chunks)
