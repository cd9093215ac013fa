"""The HTTP layer over real sockets, with routes defined here to exercise each behaviour."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import task

from homeserver.ratelimit import Ratelimiter
from rest.errors import MatrixError, missing_token, unknown_token
from rest.request import HttpRequest, Response
from rest.router import Auth, Route, Router
from rest.server import HearthSite, InFlightRequests, MatrixResource
from tests.integration import federation_helpers
from tests.integration.federation_helpers import Federation
from tests.integration.harness import http_request, make_config, start_homeserver


class Requester:
    def __init__(self, user_id: str) -> None:
        self.user_id = user_id


async def token_authenticator(request: HttpRequest, route: Route) -> Requester | None:
    header = request.header("Authorization")
    token = header[7:] if header and header.startswith("Bearer ") else None
    token = token or request.query_string("access_token")
    if token is None:
        if route.auth is Auth.OPTIONAL:
            return None
        raise missing_token()
    if token != "good":
        raise unknown_token()
    return Requester("@alice:hs.test")


db_configs = federation_helpers.db_configs
federation = federation_helpers.federation


def build_router(reactor: Any, seen: list[str]) -> Router:
    router = Router()

    async def echo(request: HttpRequest) -> dict[str, Any]:
        return {"got": request.json(), "params": request.path_params}

    async def whoami(request: HttpRequest) -> dict[str, Any]:
        return {"user_id": request.requester.user_id}

    async def ip(request: HttpRequest) -> dict[str, Any]:
        logging.getLogger("tests.http").info("handling ip for %s", request.client_ip)
        return {"ip": request.client_ip, "secure": request.is_secure}

    async def boom(request: HttpRequest) -> dict[str, Any]:
        raise RuntimeError("secret internal detail")

    async def teapot(request: HttpRequest) -> dict[str, Any]:
        raise MatrixError(418, "M_TEAPOT", "short and stout", extra_field=1)

    async def limited(request: HttpRequest) -> dict[str, Any]:
        return {}

    async def slow(request: HttpRequest) -> Response:
        seen.append("slow started")
        await task.deferLater(reactor, 0.5, lambda: None)
        seen.append("slow finished")
        return Response(status=201, json_body={"done": True})

    async def options_sensitive(request: HttpRequest) -> dict[str, Any]:
        seen.append("endpoint ran")
        return {}

    router.add("POST", "/echo/{thing}", echo)
    router.add("GET", "/whoami", whoami, auth=Auth.USER)
    router.add("GET", "/ip", ip)
    router.add("GET", "/boom", boom)
    router.add("GET", "/teapot", teapot)
    router.add("GET", "/limited", limited, auth=Auth.OPTIONAL, ratelimit="rc_test")
    router.add("GET", "/slow", slow)
    router.add("PUT", "/sensitive", options_sensitive)
    return router


@pytest.fixture
def server(reactor_thread: Any, run_sync: Any) -> Iterator[dict[str, Any]]:
    seen: list[str] = []
    in_flight = InFlightRequests()
    ports = []
    for x_forwarded in (False, True):
        resource = MatrixResource(
            build_router(reactor_thread, seen),
            clock=reactor_thread,
            authenticators={Auth.USER: token_authenticator, Auth.OPTIONAL: token_authenticator},
            ratelimiters={"rc_test": Ratelimiter(0.001, 2, reactor_thread.seconds)},
            in_flight=in_flight,
            x_forwarded=x_forwarded,
        )
        site = HearthSite(resource, max_body_size=1024, reactor=reactor_thread)
        ports.append(
            run_sync(lambda site=site: reactor_thread.listenTCP(0, site, interface="127.0.0.1"))
        )
    yield {
        "port": ports[0].getHost().port,
        "forwarded_port": ports[1].getHost().port,
        "seen": seen,
        "in_flight": in_flight,
    }
    for port in ports:
        run_sync(port.stopListening)


def test_json_body_and_decoded_path_params(server: dict[str, Any]) -> None:
    result = http_request(server["port"], "POST", "/echo/a%20b", body={"k": ["v", 1]})
    assert result.status == 200
    assert result.json() == {"got": {"k": ["v", 1]}, "params": {"thing": "a b"}}


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        (b"{not json", "M_NOT_JSON"),
        (b"", "M_NOT_JSON"),
        (b"\xff\xfe", "M_NOT_JSON"),
        (b'{"a": NaN}', "M_NOT_JSON"),
        (b"[1, 2]", "M_BAD_JSON"),
        (b'"text"', "M_BAD_JSON"),
    ],
)
def test_bad_bodies_are_matrix_errors(server: dict[str, Any], body: bytes, errcode: str) -> None:
    result = http_request(server["port"], "POST", "/echo/x", body=body)
    assert result.status == 400
    assert result.json()["errcode"] == errcode


def test_body_over_the_limit_is_413_too_large(server: dict[str, Any]) -> None:
    result = http_request(server["port"], "POST", "/echo/x", body={"pad": "x" * 5000})
    assert result.status == 413
    assert result.json()["errcode"] == "M_TOO_LARGE"


def test_chunked_body_over_the_limit_is_413(server: dict[str, Any]) -> None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=10)
    try:
        chunks = iter([b'{"pad": "', b"y" * 3000, b'"}'])
        connection.request("POST", "/echo/x", body=chunks, encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 413
    finally:
        connection.close()


def test_authentication_required_missing_and_unknown(server: dict[str, Any]) -> None:
    missing = http_request(server["port"], "GET", "/whoami")
    assert (missing.status, missing.json()["errcode"]) == (401, "M_MISSING_TOKEN")
    unknown = http_request(server["port"], "GET", "/whoami", headers={"Authorization": "Bearer x"})
    assert (unknown.status, unknown.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    ok = http_request(server["port"], "GET", "/whoami?access_token=good")
    assert ok.json() == {"user_id": "@alice:hs.test"}


def test_rate_limit_gives_429_with_retry_after(server: dict[str, Any]) -> None:
    port = server["port"]
    assert [http_request(port, "GET", "/limited").status for _ in range(2)] == [200, 200]
    refused = http_request(port, "GET", "/limited")
    assert refused.status == 429
    body = refused.json()
    assert body["errcode"] == "M_LIMIT_EXCEEDED"
    assert body["retry_after_ms"] > 0
    assert int(refused.headers["retry-after"]) >= 1
    # Limits are per requester: an authenticated user has their own bucket.
    authed = http_request(port, "GET", "/limited", headers={"Authorization": "Bearer good"})
    assert authed.status == 200


def test_unexpected_exception_is_500_without_traceback(
    server: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        result = http_request(server["port"], "GET", "/boom")
    assert result.status == 500
    assert result.json() == {"errcode": "M_UNKNOWN", "error": "Internal server error"}
    assert b"secret internal detail" not in result.body
    assert "secret internal detail" in caplog.text  # but the admin sees it in the log


def test_matrix_error_extra_fields(server: dict[str, Any]) -> None:
    result = http_request(server["port"], "GET", "/teapot")
    assert result.status == 418
    assert result.json() == {"errcode": "M_TEAPOT", "error": "short and stout", "extra_field": 1}


def test_x_forwarded_for_only_on_marked_listeners(server: dict[str, Any]) -> None:
    headers = {"X-Forwarded-For": "203.0.113.9, 10.0.0.1", "X-Forwarded-Proto": "https"}
    direct = http_request(server["port"], "GET", "/ip", headers=headers).json()
    assert direct == {"ip": "127.0.0.1", "secure": False}
    proxied = http_request(server["forwarded_port"], "GET", "/ip", headers=headers).json()
    assert proxied == {"ip": "203.0.113.9", "secure": True}


def test_every_log_line_of_a_request_carries_its_id(
    server: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    from homeserver.logging_context import RequestIdFilter

    # The filter reads the id when the line is logged, as a configured handler's would.
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO):
        http_request(server["port"], "GET", "/ip")
        http_request(server["port"], "GET", "/ip")
    handler_ids = [getattr(r, "request", "") for r in caplog.records if r.name == "tests.http"]
    access_records = [r for r in caplog.records if r.name == "rest.server"]
    assert len(handler_ids) == 2 and handler_ids[0] != handler_ids[1]
    assert all(rid.startswith("GET-") for rid in handler_ids)
    assert [getattr(r, "request", "") for r in access_records] == handler_ids
    assert all(" GET /ip" in r.getMessage() for r in access_records)


def test_options_never_runs_the_endpoint(server: dict[str, Any]) -> None:
    result = http_request(server["port"], "OPTIONS", "/sensitive")
    assert result.status == 204
    assert "endpoint ran" not in server["seen"]


def test_in_flight_request_finishes_before_idle(server: dict[str, Any], run_sync: Any) -> None:
    results: list[int] = []
    thread = threading.Thread(
        target=lambda: results.append(http_request(server["port"], "GET", "/slow").status)
    )
    thread.start()
    for _ in range(100):
        if "slow started" in server["seen"]:
            break
        threading.Event().wait(0.01)
    run_sync(lambda: server["in_flight"].wait_idle(), timeout=10)
    assert server["seen"][-1] == "slow finished"
    thread.join(10)
    assert results == [201]


def test_shutdown_lets_in_flight_requests_finish(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    running = start_homeserver(make_config(tmp_path, db_config), reactor_thread, run_sync)
    hs = running.homeserver

    async def slow(request: HttpRequest) -> dict[str, Any]:
        await task.deferLater(reactor_thread, 0.5, lambda: None)
        assert hs.database is not None
        rows = await hs.database.execute("during_shutdown", "SELECT 1")
        return {"rows": [list(r) for r in rows]}

    # Reach into the live router to add a slow route for this test only.
    resource = hs.listening_ports[0].factory.resource
    resource._router.add("GET", "/slow", slow)
    results: list[Any] = []
    thread = threading.Thread(
        target=lambda: results.append(http_request(running.port, "GET", "/slow"))
    )
    thread.start()
    threading.Event().wait(0.2)
    running.stop()
    thread.join(10)
    assert results and results[0].status == 200
    assert results[0].json() == {"rows": [[1]]}
    with pytest.raises(OSError):
        http_request(running.port, "GET", "/health")


def test_shutdown_closes_kept_alive_connections_and_refuses_new_requests(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    import http.client

    running = start_homeserver(make_config(tmp_path, db_config), reactor_thread, run_sync)
    hs = running.homeserver

    async def slow(request: HttpRequest) -> dict[str, Any]:
        await task.deferLater(reactor_thread, 0.5, lambda: None)
        return {"done": True}

    resource = hs.listening_ports[0].factory.resource
    resource._router.add("GET", "/slow", slow)
    # A client holding a keep-alive connection (as a federating server's pool does).
    kept = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    kept.request("GET", "/health")
    assert kept.getresponse().read() == b"OK"
    results: list[Any] = []
    thread = threading.Thread(
        target=lambda: results.append(http_request(running.port, "GET", "/slow"))
    )
    thread.start()
    threading.Event().wait(0.2)
    stopping = threading.Thread(target=running.stop)
    stopping.start()
    threading.Event().wait(0.1)
    # While the slow request finishes, a new request on the kept connection is refused.
    kept.request("GET", "/_matrix/client/versions")
    refused = kept.getresponse()
    assert refused.status == 503
    assert json.loads(refused.read())["errcode"] == "M_UNKNOWN"
    stopping.join(20)
    thread.join(10)
    assert results and results[0].status == 200
    # And once stopped, the kept connection is closed: nothing is served any more.
    with pytest.raises((OSError, http.client.HTTPException)):
        kept.request("GET", "/health")
        kept.getresponse()
    kept.close()


def test_shutdown_closes_kept_alive_tls_connections(federation: Federation) -> None:
    """A TLS connection kept alive by a client (a federating server's pool) is closed
    when the server stops, so the client's next request fails at once rather than wait
    for an answer that never comes."""
    server = federation.start("tls")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with context.wrap_socket(raw) as kept:
            kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert kept.recv(4096).startswith(b"HTTP/1.1 200")
            server.stop()
            federation.servers.remove(server)
            # Within the socket timeout, the server's end is closed: EOF, not a timeout.
            received = b""
            try:
                while chunk := kept.recv(4096):
                    received += chunk
            except (ssl.SSLError, ConnectionResetError):
                pass
            assert received == b""
