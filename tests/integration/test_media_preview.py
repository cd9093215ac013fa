"""URL previews against a local web server, on both engines; address blocking included."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from twisted.internet.address import IPv4Address, IPv6Address

from homeserver.config import parse_config
from homeserver.config.reader import ConfigError
from homeserver.media.url_preview import AddressPolicy, _BlocklistingResolver
from tests.integration.harness import HttpResult, RunningHomeserver, make_config, start_homeserver
from tests.integration.media_helpers import CLIENT_MEDIA, MEDIA, download, image_bytes, size_of

PNG = image_bytes(300, 200)


class _Site:
    """A small web server on one loopback address, recording the paths asked for."""

    def __init__(self, address: str) -> None:
        self.requests: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.requests.append(self.path)
                if self.path == "/page":
                    body = (
                        b"<html><head><title>Fallback</title>"
                        b'<meta property="og:title" content="A page">'
                        b'<meta name="description" content="What it is about">'
                        b'<meta property="og:image" content="/image.png">'
                        b"</head><body><p>Hello</p></body></html>"
                    )
                    self._send(200, "text/html; charset=utf-8", body)
                elif self.path == "/image.png":
                    self._send(200, "image/png", PNG)
                elif self.path == "/big":
                    self._send(200, "text/html", b"<p>" + b"x" * 300_000)
                elif self.path.startswith("/redirect?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.split("=", 1)[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/missing":
                    self._send(404, "text/plain", b"no")
                else:
                    self._send(200, "text/plain", b"secret")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.url = f"http://{address}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sites() -> Iterator[tuple[_Site, _Site]]:
    allowed, blocked = _Site("127.0.0.1"), _Site("127.0.0.2")
    yield allowed, blocked
    allowed.close()
    blocked.close()


PREVIEW_CONFIG: dict[str, Any] = {
    "url_preview_enabled": True,
    "url_preview_ip_range_blacklist": ["127.0.0.0/8", "::1/128", "10.0.0.0/8"],
    # Tests only: the allowed site is on loopback.
    "url_preview_ip_range_whitelist": ["127.0.0.1/32"],
    "max_spider_size": 100_000,
    "url_preview_url_blacklist": [{"path": "/forbidden*"}],
}


@pytest.fixture
def hs(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    running = start_homeserver(
        make_config(tmp_path, db_config, **PREVIEW_CONFIG), reactor_thread, run_sync
    )
    yield running
    running.stop()


def preview(hs: RunningHomeserver, token: str, url: str, prefix: str = CLIENT_MEDIA) -> HttpResult:
    return hs.request("GET", f"{prefix}/preview_url?url={quote(url, safe='')}", access_token=token)


def test_preview_of_a_page_keeps_its_image(
    hs: RunningHomeserver, sites: tuple[_Site, _Site]
) -> None:
    allowed, _ = sites
    alice = hs.register_user("alice")
    result = preview(hs, alice.access_token, allowed.url + "/page")
    assert result.status == 200, result.body
    og = result.json()
    assert og["og:title"] == "A page"
    assert og["og:description"] == "What it is about"
    assert og["og:image"].startswith("mxc://hs.test/")
    assert og["og:image:type"] == "image/png"
    assert og["matrix:image:size"] == len(PNG)
    assert (og["og:image:width"], og["og:image:height"]) == (300, 200)
    image = download(hs, alice.access_token, og["og:image"][len("mxc://") :])
    assert image.body == PNG
    assert allowed.requests == ["/page", "/image.png"]
    # Cached: the site is not asked again; the legacy path answers too.
    again = preview(hs, alice.access_token, allowed.url + "/page", prefix=MEDIA)
    assert again.json() == og
    assert allowed.requests == ["/page", "/image.png"]


def test_preview_of_an_image(hs: RunningHomeserver, sites: tuple[_Site, _Site]) -> None:
    allowed, _ = sites
    alice = hs.register_user("alice")
    og = preview(hs, alice.access_token, allowed.url + "/image.png").json()
    assert og["og:image:type"] == "image/png"
    media = og["og:image"][len("mxc://") :]
    thumb = hs.request(
        "GET",
        f"{CLIENT_MEDIA}/thumbnail/{media}?width=96&height=96&method=crop",
        access_token=alice.access_token,
    )
    assert size_of(thumb.body) == (96, 96)


def test_blocked_addresses_are_never_fetched(
    hs: RunningHomeserver, sites: tuple[_Site, _Site]
) -> None:
    allowed, blocked = sites
    token = hs.register_user("alice").access_token

    def error(result: HttpResult) -> tuple[int, str]:
        return result.status, result.json()["errcode"]

    # An IP literal in the blacklist.
    assert error(preview(hs, token, blocked.url + "/secret")) == (403, "M_UNKNOWN")
    # A redirect from an allowed site to a blocked address.
    redirect = allowed.url + "/redirect?to=" + blocked.url + "/secret"
    assert error(preview(hs, token, redirect)) == (403, "M_UNKNOWN")
    assert blocked.requests == []
    # A name is resolved through the same checks (localhost is 127.0.0.1 here: allowed).
    port = allowed.url.rsplit(":", 1)[1]
    assert preview(hs, token, f"http://localhost:{port}/page").status == 200
    # A redirect within the allowed site is followed.
    followed = preview(hs, token, allowed.url + "/redirect?to=/page")
    assert followed.json()["og:title"] == "A page"


def test_preview_limits_and_bad_urls(hs: RunningHomeserver, sites: tuple[_Site, _Site]) -> None:
    allowed, _ = sites
    token = hs.register_user("alice").access_token

    def error(result: HttpResult) -> tuple[int, str]:
        return result.status, result.json()["errcode"]

    assert error(preview(hs, token, allowed.url + "/big")) == (502, "M_UNKNOWN")
    assert error(preview(hs, token, allowed.url + "/missing")) == (502, "M_UNKNOWN")
    assert error(preview(hs, token, allowed.url + "/forbidden-page")) == (403, "M_UNKNOWN")
    assert error(preview(hs, token, "file:///etc/passwd")) == (400, "M_INVALID_PARAM")
    assert error(preview(hs, token, "http://")) == (400, "M_INVALID_PARAM")
    missing = hs.request("GET", f"{CLIENT_MEDIA}/preview_url", access_token=token)
    assert error(missing) == (400, "M_MISSING_PARAM")
    assert "/forbidden-page" not in allowed.requests


def test_preview_disabled_and_config_checks(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    running = start_homeserver(make_config(tmp_path, db_config), reactor_thread, run_sync)
    try:
        token = running.register_user("alice").access_token
        result = preview(running, token, "http://example.org/")
        assert (result.status, result.json()["errcode"]) == (404, "M_UNRECOGNIZED")
    finally:
        running.stop()
    with pytest.raises(ConfigError, match="url_preview_ip_range_blacklist"):
        parse_config({"server_name": "hs.test", "url_preview_enabled": True}, tmp_path)


class _FakeResolver:
    def __init__(self, hosts: list[str]) -> None:
        self.hosts = hosts

    def resolveHostName(self, receiver: Any, name: str, port: int = 0, *args: Any) -> Any:
        receiver.resolutionBegan(None)
        for host in self.hosts:
            receiver.addressResolved(
                IPv4Address("TCP", host, port)
                if ":" not in host
                else IPv6Address("TCP", host, port)
            )
        receiver.resolutionComplete()
        return receiver


class _Collect:
    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.complete = False

    def resolutionBegan(self, resolution: Any) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        self.addresses.append(address.host)

    def resolutionComplete(self) -> None:
        self.complete = True


@pytest.mark.parametrize(
    ("resolved", "expected"),
    [
        (["93.184.216.34", "2606:2800:220:1::1"], ["93.184.216.34", "2606:2800:220:1::1"]),
        # One private address among public ones: the whole name is refused.
        (["93.184.216.34", "10.1.2.3"], []),
        (["::ffff:10.1.2.3"], []),
        (["127.0.0.1"], ["127.0.0.1"]),  # whitelisted
        (["0.0.0.0"], []),  # always blocked
    ],
)
def test_resolver_checks_every_address(resolved: list[str], expected: list[str]) -> None:
    policy = AddressPolicy(
        [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.0/8")],
        [ipaddress.ip_network("127.0.0.1/32")],
    )
    resolver = _BlocklistingResolver(_FakeResolver(resolved), policy)
    collect = _Collect()
    resolver.resolveHostName(collect, "example.test", 80)
    assert collect.complete
    assert collect.addresses == expected
