"""Outbound requests through server discovery over real sockets: a real HTTPS listener
serving ``/.well-known/matrix/server`` files, SRV records from a DNS-free resolver, a Hearth
server behind the delegation, TLS verification and the IP range filter."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import ssl
from twisted.web import resource, server

from federation.client import FederationClient, FederationError, federation_path
from federation.discovery import SrvTarget, StaticResolver
from federation.ip_filter import IPFilter
from homeserver.config.generate import write_self_signed_certificate
from tests.integration import federation_helpers
from tests.integration.federation_helpers import FederatedServer, Federation

db_configs = federation_helpers.db_configs
federation = federation_helpers.federation

WELL_KNOWN = b"/.well-known/matrix/server"


class WellKnownFiles(resource.Resource):
    """``/.well-known/matrix/server`` per Host header, counting fetches."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.fetches: dict[str, int] = {}

    def render_GET(self, request: Any) -> bytes:
        host = request.getHeader("host").rsplit(":", 1)[0]
        self.fetches[host] = self.fetches.get(host, 0) + 1
        if request.path != WELL_KNOWN:
            request.setResponseCode(404)
            return b"{}"
        if host in self.redirects:
            request.setResponseCode(302)
            request.setHeader("Location", self.redirects[host])
            return b""
        if host not in self.files:
            request.setResponseCode(404)
            return b'{"errcode":"M_NOT_FOUND"}'
        request.setHeader("Content-Type", "application/json")
        return self.files[host]


@pytest.fixture
def well_known(
    tmp_path: Path, reactor_thread: Any, run_sync: Callable[..., Any]
) -> Iterator[tuple[WellKnownFiles, int]]:
    files = WellKnownFiles()
    cert, key = tmp_path / "wk.crt", tmp_path / "wk.key"
    write_self_signed_certificate("wellknown.test", cert, key)
    options = ssl.PrivateCertificate.loadPEM(cert.read_bytes() + key.read_bytes()).options()
    port = run_sync(
        lambda: reactor_thread.listenSSL(0, server.Site(files), options, interface="127.0.0.1")
    )
    yield files, port.getHost().port
    run_sync(port.stopListening)


def _client(
    origin: FederatedServer,
    well_known_port: int,
    b: FederatedServer,
    *,
    whitelist: tuple[str, ...] = ("127.0.0.1/32",),
    verify: bool = False,
) -> FederationClient:
    import ipaddress

    from homeserver.config.loader import DEFAULT_IP_RANGE_BLACKLIST

    resolver = StaticResolver(
        hosts={
            name: ["127.0.0.1"]
            for name in ("b.test", "b-host.test", "c.test", "d.test", "r.test", "loop.test")
        },
        srv={
            "_matrix-fed._tcp.c.test": [SrvTarget("b-host.test", b.port)],
            "_matrix._tcp.d.test": [SrvTarget("b-host.test", b.port)],
        },
    )
    return FederationClient(
        origin.homeserver.reactor,
        origin.server_name,
        origin.homeserver.server_keys.signing_key,
        resolver=resolver,
        ip_filter=IPFilter(
            [ipaddress.ip_network(n) for n in DEFAULT_IP_RANGE_BLACKLIST],
            [ipaddress.ip_network(n) for n in whitelist],
        ),
        verify_certificates=verify,
        well_known_port=well_known_port,
    )


ECHO = federation_path("/_matrix/federation/v1/hearth_test_echo/%s", "x")


def _setup(
    federation: Federation, well_known: tuple[WellKnownFiles, int]
) -> tuple[FederatedServer, FederatedServer, WellKnownFiles, int]:
    files, port = well_known
    a = federation.start("a")
    b = federation.start("b", server_name="b.test")
    files.files["b.test"] = json.dumps({"m.server": f"b-host.test:{b.port}"}).encode()
    return a, b, files, port


def test_well_known_delegation(
    federation: Federation, well_known: tuple[WellKnownFiles, int]
) -> None:
    a, b, files, port = _setup(federation, well_known)
    client = _client(a, port, b)
    try:
        result = a.run_sync(client.get_json("b.test", ECHO))
        # B checked the signature (destination b.test, its own name) and saw the delegated
        # name as the Host header.
        assert result["origin"] == a.server_name
        assert result["host"] == f"b-host.test:{b.port}"
        a.run_sync(client.get_json("b.test", ECHO))
        assert files.fetches["b.test"] == 1  # the delegation is cached
    finally:
        a.run_sync(client.close())


def test_srv_records_when_no_well_known(
    federation: Federation, well_known: tuple[WellKnownFiles, int]
) -> None:
    a, b, files, port = _setup(federation, well_known)
    client = _client(a, port, b)
    try:
        # _matrix-fed._tcp.c.test, then the deprecated _matrix._tcp.d.test, point at B.
        for name in ("c.test", "d.test"):
            document = a.run_sync(client.get_json(name, "/_matrix/key/v2/server"))
            assert document["server_name"] == "b.test"
            assert files.fetches[name] == 1  # a 404 well-known was asked for first
    finally:
        a.run_sync(client.close())


def test_well_known_redirects_are_followed_but_not_loops(
    federation: Federation, well_known: tuple[WellKnownFiles, int]
) -> None:
    a, b, files, port = _setup(federation, well_known)
    files.redirects["r.test"] = f"https://b.test:{port}/.well-known/matrix/server"
    files.redirects["loop.test"] = f"https://loop.test:{port}/.well-known/matrix/server"
    client = _client(a, port, b)
    try:
        document = a.run_sync(client.get_json("r.test", "/_matrix/key/v2/server"))
        assert document["server_name"] == "b.test"
        # A redirect loop is a failed lookup: on to SRV (none) and port 8448 (nothing there).
        with pytest.raises(FederationError):
            a.run_sync(client.get_json("loop.test", "/_matrix/key/v2/server", timeout=10))
        assert 1 < files.fetches["loop.test"] <= 10
    finally:
        a.run_sync(client.close())


def test_every_resolved_address_is_filtered(
    federation: Federation, well_known: tuple[WellKnownFiles, int]
) -> None:
    a, b, files, port = _setup(federation, well_known)
    client = _client(a, port, b, whitelist=())
    try:
        with pytest.raises(FederationError, match="blocked"):
            a.run_sync(client.get_json("c.test", "/_matrix/key/v2/server"))
        with pytest.raises(FederationError, match="blocked"):
            a.run_sync(client.get_json(f"127.0.0.1:{b.port}", ECHO))
        # Not even the .well-known request got through.
        assert files.fetches == {}
    finally:
        a.run_sync(client.close())


def test_certificates_are_verified_when_asked(
    federation: Federation, well_known: tuple[WellKnownFiles, int]
) -> None:
    a, b, _files, port = _setup(federation, well_known)
    client = _client(a, port, b, verify=True)
    try:
        # B's certificate is self-signed: refused.
        with pytest.raises(FederationError):
            a.run_sync(client.get_json(f"127.0.0.1:{b.port}", "/_matrix/key/v2/server"))
    finally:
        a.run_sync(client.close())


def test_bodies_over_their_limit_are_refused(
    federation: Federation, well_known: tuple[WellKnownFiles, int]
) -> None:
    from federation.client import ResponseTooLarge
    from federation.discovery import WELL_KNOWN_MAX_SIZE

    a, b, files, port = _setup(federation, well_known)
    # An oversized .well-known is a failed lookup, not a delegation: c.test's SRV record
    # (to B) is used instead of the delegation the file names.
    padding = "x" * WELL_KNOWN_MAX_SIZE
    files.files["c.test"] = json.dumps({"m.server": "nowhere.test:1", "pad": padding}).encode()
    client = _client(a, port, b)
    try:
        document = a.run_sync(client.get_json("c.test", "/_matrix/key/v2/server"))
        assert document["server_name"] == "b.test"

        path = "/_matrix/key/v2/server"
        whole = a.run_sync(client.request("GET", "b.test", path, max_size=1_000_000))
        assert json.loads(whole.body)["server_name"] == "b.test"
        with pytest.raises(ResponseTooLarge):
            a.run_sync(client.request("GET", "b.test", path, max_size=len(whole.body) - 1))
    finally:
        a.run_sync(client.close())
