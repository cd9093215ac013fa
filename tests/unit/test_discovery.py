"""Server discovery (spec: "Resolving server names") over a DNS-free resolver, and the
.well-known caching rules, with the fetch given as the plain function it is."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from federation.discovery import (
    WELL_KNOWN_DEFAULT_CACHE_PERIOD,
    WELL_KNOWN_DOWN_CACHE_PERIOD,
    WELL_KNOWN_INVALID_CACHE_PERIOD,
    WELL_KNOWN_MAX_CACHE_PERIOD,
    WELL_KNOWN_MIN_CACHE_PERIOD,
    DiscoveryError,
    ServerAddress,
    ServerDiscovery,
    SrvTarget,
    StaticResolver,
    WellKnownFetchError,
    WellKnownResolver,
    WellKnownResponse,
    cache_period_from_headers,
    split_server_name,
)
from federation.ip_filter import IPFilter

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class WellKnownFiles:
    """The responses each host gives, and how often it was asked."""

    def __init__(self) -> None:
        self.responses: dict[str, WellKnownResponse | Exception] = {}
        self.fetches: dict[str, int] = {}

    async def fetch(self, hostname: str) -> WellKnownResponse:
        self.fetches[hostname] = self.fetches.get(hostname, 0) + 1
        response = self.responses.get(hostname, WellKnownResponse(404, {}, b""))
        if isinstance(response, Exception):
            raise response
        return response


def delegation(target: str, headers: dict[str, str] | None = None) -> WellKnownResponse:
    return WellKnownResponse(200, headers or {}, json.dumps({"m.server": target}).encode())


def discovery(
    files: WellKnownFiles, clock: Clock | None = None, srv: dict[str, list[SrvTarget]] | None = None
) -> ServerDiscovery:
    resolver = StaticResolver(srv=srv or {})
    return ServerDiscovery(resolver, WellKnownResolver(files.fetch, clock or Clock(), lambda: 1.0))


def test_ip_literals_and_explicit_ports_skip_well_known() -> None:
    files = WellKnownFiles()
    d = discovery(files)
    assert run(d.resolve("1.2.3.4")) == ServerAddress(
        "1.2.3.4", "1.2.3.4", "1.2.3.4", (("1.2.3.4", 8448),)
    )
    assert run(d.resolve("[2001:db8::1]:8000")) == ServerAddress(
        "[2001:db8::1]:8000", "[2001:db8::1]:8000", "2001:db8::1", (("2001:db8::1", 8000),)
    )
    assert run(d.resolve("example.org:1234")) == ServerAddress(
        "example.org:1234", "example.org:1234", "example.org", (("example.org", 1234),)
    )
    assert files.fetches == {}


def test_delegation_cases() -> None:
    files = WellKnownFiles()
    files.responses["ip.example"] = delegation("10.0.0.1:99")
    files.responses["port.example"] = delegation("host.example:1234")
    files.responses["srv.example"] = delegation("deleg.example")
    files.responses["plain.example"] = delegation("deleg2.example")
    srv = {"_matrix-fed._tcp.deleg.example": [SrvTarget("target.example", 443)]}
    d = discovery(files, srv=srv)
    assert run(d.resolve("ip.example")) == ServerAddress(
        "ip.example", "10.0.0.1:99", "10.0.0.1", (("10.0.0.1", 99),)
    )
    assert run(d.resolve("port.example")) == ServerAddress(
        "port.example", "host.example:1234", "host.example", (("host.example", 1234),)
    )
    # SRV of the delegated name: Host and certificate are the delegated name, not the target.
    assert run(d.resolve("srv.example")) == ServerAddress(
        "srv.example", "deleg.example", "deleg.example", (("target.example", 443),)
    )
    assert run(d.resolve("plain.example")) == ServerAddress(
        "plain.example", "deleg2.example", "deleg2.example", (("deleg2.example", 8448),)
    )


def test_srv_then_legacy_srv_then_8448() -> None:
    files = WellKnownFiles()
    srv = {
        "_matrix-fed._tcp.new.example": [SrvTarget("a.example", 1), SrvTarget("b.example", 2, 5)],
        "_matrix._tcp.new.example": [SrvTarget("never.example", 3)],
        "_matrix._tcp.old.example": [SrvTarget("legacy.example", 4)],
    }
    d = discovery(files, srv=srv)
    new = run(d.resolve("new.example"))
    assert new.targets == (("a.example", 1), ("b.example", 2))  # priority order
    assert (new.host_header, new.tls_name) == ("new.example", "new.example")
    assert run(d.resolve("old.example")).targets == (("legacy.example", 4),)
    assert run(d.resolve("none.example")).targets == (("none.example", 8448),)


@pytest.mark.parametrize(
    "response",
    [
        WellKnownResponse(200, {}, b"not json"),
        WellKnownResponse(200, {}, b'{"m.server": 5}'),
        WellKnownResponse(200, {}, b'{"m.server": "bad name!"}'),
        WellKnownResponse(200, {}, b"[]"),
        WellKnownResponse(404, {}, b'{"m.server": "x.example"}'),
    ],
)
def test_invalid_well_known_falls_back(response: WellKnownResponse) -> None:
    files = WellKnownFiles()
    files.responses["h.example"] = response
    assert run(discovery(files).resolve("h.example")).targets == (("h.example", 8448),)


def test_well_known_cache_periods() -> None:
    clock = Clock()
    files = WellKnownFiles()
    resolver = WellKnownResolver(files.fetch, clock, lambda: 1.0)
    files.responses["a.example"] = delegation("d.example")

    assert run(resolver.delegated_server("a.example")) == "d.example"
    clock.now += WELL_KNOWN_DEFAULT_CACHE_PERIOD * 0.79
    run(resolver.delegated_server("a.example"))
    assert files.fetches["a.example"] == 1
    # Within the last fifth of its life the answer is refreshed.
    clock.now += WELL_KNOWN_DEFAULT_CACHE_PERIOD * 0.02
    run(resolver.delegated_server("a.example"))
    assert files.fetches["a.example"] == 2

    # Errors are remembered for an hour.
    run(resolver.delegated_server("none.example"))
    clock.now += WELL_KNOWN_INVALID_CACHE_PERIOD * 0.7
    run(resolver.delegated_server("none.example"))
    assert files.fetches["none.example"] == 1
    clock.now += WELL_KNOWN_INVALID_CACHE_PERIOD * 0.2
    run(resolver.delegated_server("none.example"))
    assert files.fetches["none.example"] == 2


def test_cache_control_is_respected_within_bounds() -> None:
    assert cache_period_from_headers({"cache-control": "max-age=600, public"}) == 600
    assert cache_period_from_headers({"cache-control": "no-store"}) == 0
    assert cache_period_from_headers({}) is None
    clock = Clock()
    files = WellKnownFiles()
    resolver = WellKnownResolver(files.fetch, clock, lambda: 1.0)
    files.responses["short.example"] = delegation("d.example", {"cache-control": "max-age=1"})
    files.responses["long.example"] = delegation("d.example", {"cache-control": "max-age=9999999"})
    files.responses["nostore.example"] = delegation("d.example", {"cache-control": "no-store"})
    for host in files.responses:
        run(resolver.delegated_server(host))
    clock.now += WELL_KNOWN_MIN_CACHE_PERIOD * 0.7
    for host in files.responses:
        run(resolver.delegated_server(host))
    assert files.fetches == {"short.example": 1, "long.example": 1, "nostore.example": 2}
    clock.now += WELL_KNOWN_MAX_CACHE_PERIOD
    run(resolver.delegated_server("long.example"))
    assert files.fetches["long.example"] == 2


def test_temporary_failures_keep_a_cached_delegation_then_retry_soon() -> None:
    clock = Clock()
    files = WellKnownFiles()
    resolver = WellKnownResolver(files.fetch, clock, lambda: 1.0)
    files.responses["a.example"] = delegation("d.example")
    run(resolver.delegated_server("a.example"))
    files.responses["a.example"] = WellKnownFetchError("connection refused")
    clock.now += WELL_KNOWN_DEFAULT_CACHE_PERIOD * 0.9
    assert run(resolver.delegated_server("a.example")) == "d.example"
    clock.now += WELL_KNOWN_DEFAULT_CACHE_PERIOD * 0.11  # now expired
    assert run(resolver.delegated_server("a.example")) is None
    fetches = files.fetches["a.example"]
    # A server that had a valid file is retried after minutes, not an hour.
    files.responses["a.example"] = delegation("d2.example")
    clock.now += WELL_KNOWN_DOWN_CACHE_PERIOD * 1.01
    assert run(resolver.delegated_server("a.example")) == "d2.example"
    assert files.fetches["a.example"] == fetches + 1


def test_split_server_name() -> None:
    assert split_server_name("example.org") == ("example.org", None)
    assert split_server_name("example.org:8448") == ("example.org", 8448)
    assert split_server_name("[::1]") == ("::1", None)
    assert split_server_name("[::1]:80") == ("::1", 80)
    for bad in ("[::1", "[::1]x", "example.org:x"):
        with pytest.raises(DiscoveryError):
            split_server_name(bad)


def test_ip_filter() -> None:
    blocked = IPFilter(
        [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8")],
        [ipaddress.ip_network("10.1.0.0/16")],
    )
    assert blocked.is_blocked("127.0.0.1")
    assert blocked.is_blocked("::ffff:127.0.0.1")  # IPv4-mapped is no way round it
    assert blocked.is_blocked("10.2.3.4")
    assert not blocked.is_blocked("10.1.2.3")
    assert not blocked.is_blocked("8.8.8.8")
    assert blocked.is_blocked("0.0.0.0")
    assert blocked.is_blocked("not-an-ip")
