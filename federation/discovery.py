"""Server discovery (spec: "Resolving server names"): from a server name to the hosts and
ports to connect to, the ``Host`` header to send and the name the certificate must match.

DNS goes through a small ``Resolver`` interface: ``SystemResolver`` asks the system's DNS
(SRV through twisted.names, addresses through getaddrinfo so /etc/hosts counts);
``StaticResolver`` answers from a fixed table, for tests and for admins who pin names.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from homeserver.events.validation import is_valid_server_name

logger = logging.getLogger(__name__)

DEFAULT_FEDERATION_PORT = 8448

# Cache periods for /.well-known/matrix/server, in seconds (the spec's recommendations;
# the shorter ones for failures are Synapse's).
WELL_KNOWN_DEFAULT_CACHE_PERIOD = 24 * 3600
WELL_KNOWN_MAX_CACHE_PERIOD = 48 * 3600
WELL_KNOWN_MIN_CACHE_PERIOD = 5 * 60
WELL_KNOWN_INVALID_CACHE_PERIOD = 3600
# After a server had a valid file, a failure is remembered only briefly: it is probably down.
WELL_KNOWN_DOWN_CACHE_PERIOD = 2 * 60
WELL_KNOWN_REMEMBER_VALID = 2 * 3600
# A cached answer is refreshed once it is this close (as a fraction of its TTL) to expiry.
WELL_KNOWN_GRACE_FACTOR = 0.2
WELL_KNOWN_MAX_SIZE = 50 * 1024
WELL_KNOWN_MAX_REDIRECTS = 5


def _jitter() -> float:
    # Spreads refreshes out so servers cached at start-up are not all re-fetched together.
    return random.uniform(0.9, 1.1)


class DiscoveryError(Exception):
    """A server name cannot be resolved to anything to connect to."""


@dataclass(frozen=True, slots=True)
class SrvTarget:
    host: str
    port: int
    priority: int = 0
    weight: int = 0


class Resolver(Protocol):
    async def lookup_srv(self, name: str) -> list[SrvTarget]:
        """The SRV records for ``name`` (e.g. ``_matrix-fed._tcp.example.org``); [] if none."""
        ...

    async def resolve_host(self, host: str) -> list[str]:
        """The IP addresses of ``host`` (AAAA and A, CNAMEs followed); [] if none."""
        ...


class StaticResolver:
    """Answers from fixed tables: no DNS at all. Unknown names have no records."""

    def __init__(
        self,
        hosts: Mapping[str, Sequence[str]] | None = None,
        srv: Mapping[str, Sequence[SrvTarget]] | None = None,
    ) -> None:
        self.hosts = {k.lower(): list(v) for k, v in (hosts or {}).items()}
        self.srv = {k.lower(): list(v) for k, v in (srv or {}).items()}

    async def lookup_srv(self, name: str) -> list[SrvTarget]:
        return list(self.srv.get(name.lower(), []))

    async def resolve_host(self, host: str) -> list[str]:
        return list(self.hosts.get(host.lower(), []))


class SystemResolver:
    """The system's DNS. SRV answers are cached by twisted.names for their TTL."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._dns: Any = None

    def _resolver(self) -> Any:
        # Made on first use: the DNS client re-reads resolv.conf on a timer from then on.
        if self._dns is None:
            from twisted.names import cache, client, resolve

            self._dns = resolve.ResolverChain(
                [
                    cache.CacheResolver(reactor=self._reactor),
                    client.Resolver(resolv="/etc/resolv.conf", reactor=self._reactor),
                ]
            )
        return self._dns

    async def lookup_srv(self, name: str) -> list[SrvTarget]:
        from twisted.names import dns, error

        try:
            answers, _authority, _additional = await self._resolver().lookupService(name)
        except (error.DNSNameError, error.DNSNotImplementedError, error.DNSQueryRefusedError):
            return []
        except error.DomainError:
            return []
        targets = []
        for record in answers:
            if record.type != dns.SRV or record.payload is None:
                continue
            target = str(record.payload.target).rstrip(".")
            # A lone "." target says the service is decidedly not offered there (RFC 2782).
            if not target:
                return []
            targets.append(
                SrvTarget(
                    host=target,
                    port=record.payload.port,
                    priority=record.payload.priority,
                    weight=record.payload.weight,
                )
            )
        return targets

    async def resolve_host(self, host: str) -> list[str]:
        from twisted.internet import threads

        try:
            infos = await threads.deferToThreadPool(
                self._reactor,
                self._reactor.getThreadPool(),
                socket.getaddrinfo,
                host,
                None,
                0,
                socket.SOCK_STREAM,
            )
        except socket.gaierror:
            return []
        addresses: list[str] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            address = str(sockaddr[0])
            if address not in addresses:
                addresses.append(address)
        return addresses


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """Where a server name's federation requests go."""

    server_name: str
    host_header: str
    # The name the certificate must be valid for; sent as SNI unless it is an IP address.
    tls_name: str
    # Hosts (names or IP literals) and ports, in the order to try them.
    targets: tuple[tuple[str, int], ...]


def split_server_name(server_name: str) -> tuple[str, int | None]:
    """``host[:port]`` → (host, port); IPv6 literals lose their brackets."""
    if server_name.startswith("["):
        end = server_name.find("]")
        if end == -1:
            raise DiscoveryError(f"bad server name {server_name!r}")
        host = server_name[1:end]
        rest = server_name[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":") or not rest[1:].isdigit():
            raise DiscoveryError(f"bad server name {server_name!r}")
        return host, int(rest[1:])
    host, sep, port = server_name.rpartition(":")
    if not sep:
        return server_name, None
    if not port.isdigit():
        raise DiscoveryError(f"bad server name {server_name!r}")
    return host, int(port)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class WellKnownResponse:
    status: int
    headers: Mapping[str, str]  # lower-cased names
    body: bytes


class WellKnownFetchError(Exception):
    """No response at all (connection, TLS or size failure)."""


WellKnownFetcher = Callable[[str], Awaitable[WellKnownResponse]]
"""Fetches ``https://<hostname>/.well-known/matrix/server``, following redirects."""


def cache_period_from_headers(headers: Mapping[str, str]) -> float | None:
    """Seconds from Cache-Control (``no-store`` → 0, ``max-age``); None if it says nothing."""
    directives: dict[str, str | None] = {}
    for part in headers.get("cache-control", "").split(","):
        name, sep, value = part.strip().partition("=")
        if name:
            directives[name.lower()] = value.strip('"') if sep else None
    if "no-store" in directives:
        return 0.0
    max_age = directives.get("max-age")
    if max_age is not None:
        try:
            return float(int(max_age))
        except ValueError:
            return None
    return None


def parse_well_known(response: WellKnownResponse) -> str | None:
    """The delegated server name, or None if the response is no valid delegation."""
    if response.status != 200:
        return None
    try:
        body = json.loads(response.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    server = body.get("m.server") if isinstance(body, dict) else None
    if not isinstance(server, str) or not is_valid_server_name(server):
        return None
    return server


class WellKnownResolver:
    """``/.well-known/matrix/server`` lookups with the spec's caching rules."""

    def __init__(
        self,
        fetch: WellKnownFetcher,
        clock: Callable[[], float],
        jitter: Callable[[], float] = _jitter,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._jitter = jitter
        # hostname -> (delegated server name or None, expires_at, ttl)
        self._cache: dict[str, tuple[str | None, float, float]] = {}
        # hostname -> until when a failure counts as "probably down" rather than "no file"
        self._had_valid: dict[str, float] = {}

    async def delegated_server(self, hostname: str) -> str | None:
        now = self._clock()
        cached = self._cache.get(hostname)
        if cached is not None:
            result, expires_at, ttl = cached
            if now < expires_at - WELL_KNOWN_GRACE_FACTOR * ttl:
                return result
        try:
            response = await self._fetch(hostname)
        except WellKnownFetchError as e:
            logger.info("fetching .well-known for %s failed: %s", hostname, e)
            if cached is not None and cached[0] is not None and now < cached[1]:
                return cached[0]  # a blip; the cached delegation still stands
            self._store(hostname, None, self._failure_period(hostname, now))
            return None
        if 500 <= response.status < 600:
            if cached is not None and cached[0] is not None and now < cached[1]:
                return cached[0]
            self._store(hostname, None, self._failure_period(hostname, now))
            return None
        result = parse_well_known(response)
        if result is None:
            logger.info(
                "no valid .well-known for %s (HTTP %d); using its SRV/A records",
                hostname,
                response.status,
            )
            self._store(hostname, None, self._failure_period(hostname, now))
            return None
        period = cache_period_from_headers(response.headers)
        if period is None:
            period = WELL_KNOWN_DEFAULT_CACHE_PERIOD * self._jitter()
        elif period > 0:
            period = min(max(period, WELL_KNOWN_MIN_CACHE_PERIOD), WELL_KNOWN_MAX_CACHE_PERIOD)
        self._had_valid[hostname] = now + period + WELL_KNOWN_REMEMBER_VALID
        self._store(hostname, result, period)
        return result

    def _failure_period(self, hostname: str, now: float) -> float:
        base = (
            WELL_KNOWN_DOWN_CACHE_PERIOD
            if self._had_valid.get(hostname, 0.0) > now
            else WELL_KNOWN_INVALID_CACHE_PERIOD
        )
        return base * self._jitter()

    def _store(self, hostname: str, result: str | None, period: float) -> None:
        if period <= 0:
            self._cache.pop(hostname, None)
            return
        self._cache[hostname] = (result, self._clock() + period, period)


class ServerDiscovery:
    """Resolves server names as the spec's "Resolving server names" section says."""

    def __init__(self, resolver: Resolver, well_known: WellKnownResolver) -> None:
        self.resolver = resolver
        self.well_known = well_known

    async def resolve(self, server_name: str) -> ServerAddress:
        host, port = split_server_name(server_name)
        if is_ip_literal(host) or port is not None:
            return await self._locate(server_name, server_name)
        delegated = await self.well_known.delegated_server(host)
        return await self._locate(server_name, delegated or server_name)

    async def _locate(self, server_name: str, name: str) -> ServerAddress:
        """Steps that follow delegation (3.1 to 3.5, or 1, 2, 4 to 6 for the server name itself)."""
        host, port = split_server_name(name)
        if is_ip_literal(host):
            return ServerAddress(
                server_name, name, host, ((host, port or DEFAULT_FEDERATION_PORT),)
            )
        host = host.lower()
        if port is not None:
            return ServerAddress(server_name, name, host, ((host, port),))
        for service in ("_matrix-fed._tcp.", "_matrix._tcp."):
            records = await self.resolver.lookup_srv(service + host)
            if records:
                return ServerAddress(server_name, host, host, _srv_order(records))
        return ServerAddress(server_name, host, host, ((host, DEFAULT_FEDERATION_PORT),))


def _srv_order(records: Sequence[SrvTarget]) -> tuple[tuple[str, int], ...]:
    """Lowest priority first; within a priority, a weighted shuffle (RFC 2782)."""
    ordered: list[tuple[str, int]] = []
    for priority in sorted({r.priority for r in records}):
        pool = [r for r in records if r.priority == priority]
        while pool:
            total = sum(r.weight for r in pool)
            if total == 0:
                chosen = pool[0]
            else:
                pick = random.uniform(0, total)
                running = 0
                chosen = pool[-1]
                for record in pool:
                    running += record.weight
                    if running >= pick:
                        chosen = record
                        break
            pool.remove(chosen)
            ordered.append((chosen.host.rstrip(".").lower(), chosen.port))
    return tuple(ordered)
