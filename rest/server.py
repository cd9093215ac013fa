"""The HTTP layer: one Twisted resource per listener that dispatches through a ``Router``.

Everything that can go wrong becomes a Matrix error JSON; CORS headers go on every
response; each request gets an id that appears in every log line written on its behalf.
"""

from __future__ import annotations

import contextvars
import io
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.http import Request as TwistedHttpRequest

from homeserver import metrics
from homeserver.logging_context import current_request_id
from homeserver.ratelimit import Ratelimiter
from rest.errors import MatrixError, limit_exceeded, too_large
from rest.request import FileResponse, HttpRequest, Response
from rest.router import Auth, Route, Router

logger = logging.getLogger(__name__)

Authenticator = Callable[[HttpRequest, Route], Awaitable[Any]]
"""Checks a request's credentials; returns the requester or raises MatrixError."""

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
    "Access-Control-Expose-Headers": "Synapse-Trace-Id, Server",
}
DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024

_request_counter = itertools.count(1)


class HearthRequest(server.Request):
    """A request that stops buffering its body once it is over the site's size limit."""

    body_too_large = False
    _body_received = 0

    def gotLength(self, length: int | None) -> None:
        limit = _max_body_size(self)
        if length is not None and length > limit:
            self.body_too_large = True
            self.content = io.BytesIO()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        self._body_received += len(data)
        limit = _max_body_size(self)
        if self._body_received > limit:
            self.body_too_large = True
            self.content = io.BytesIO()
            return
        super().handleContentChunk(data)


def _max_body_size(request: server.Request) -> int:
    site = getattr(request.channel, "site", None)
    return int(getattr(site, "max_body_size", DEFAULT_MAX_BODY_SIZE))


class HearthSite(server.Site):
    requestFactory = HearthRequest

    def __init__(self, root: resource.Resource, max_body_size: int, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.max_body_size = max_body_size
        # Open connections, so shutdown can close the keep-alive ones too: stopping the
        # listener alone would leave them served by a server whose database is closed.
        self.connections: set[Any] = set()

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        if channel is not None:
            self.connections.add(channel)
            lost = channel.connectionLost

            def connection_lost(reason: Any) -> None:
                self.connections.discard(channel)
                lost(reason)

            channel.connectionLost = connection_lost
        return channel

    def close_connections(self) -> None:
        """Close every connection (in-flight requests have finished by then)."""
        for channel in list(self.connections):
            # Twisted wraps each HTTPChannel (for HTTP/2 negotiation). The channel itself
            # must close: it is registered as the transport's producer, and a TLS
            # transport told to close directly waits for that producer to go away first,
            # which it never does (the connection stayed open, and the peer's next
            # request on it went unanswered).
            inner = getattr(channel, "_channel", None) or channel
            inner.loseConnection()  # after what is written has been sent

    def log(self, request: TwistedHttpRequest) -> None:
        pass  # MatrixResource logs each request itself, with its id and timing


class InFlightRequests:
    """Counts requests being handled so shutdown can wait for them to finish."""

    def __init__(self) -> None:
        self.count = 0
        # Set when shutdown begins: new requests are refused with 503 from then on.
        self.closing = False
        self._idle_waiters: list[defer.Deferred[None]] = []

    def started(self) -> None:
        self.count += 1
        metrics.http_requests_in_flight.inc()

    def finished(self) -> None:
        self.count -= 1
        metrics.http_requests_in_flight.dec()
        if self.count == 0:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def wait_idle(self) -> defer.Deferred[None]:
        if self.count == 0:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._idle_waiters.append(waiter)
        return waiter


class MatrixResource(resource.Resource):
    isLeaf = True

    def __init__(
        self,
        router: Router,
        *,
        clock: IReactorTime,
        authenticators: Mapping[Auth, Authenticator],
        ratelimiters: Mapping[str, Ratelimiter],
        in_flight: InFlightRequests,
        x_forwarded: bool = False,
    ) -> None:
        super().__init__()
        self._router = router
        self._clock = clock
        self._authenticators = dict(authenticators)
        self._ratelimiters = dict(ratelimiters)
        self._in_flight = in_flight
        self._x_forwarded = x_forwarded
        for route in router.routes:
            if route.auth not in (Auth.NONE,) and route.auth not in self._authenticators:
                raise ValueError(f"no authenticator for {route.auth} (route {route.pattern})")
            if route.ratelimit is not None and route.ratelimit not in self._ratelimiters:
                raise ValueError(f"no rate limiter {route.ratelimit!r} (route {route.pattern})")

    def render(self, request: TwistedHttpRequest) -> int:
        method = request.method.decode("ascii", "replace")
        request_id = f"{method}-{next(_request_counter)}"
        context = contextvars.copy_context()
        context.run(self._begin, request, request_id)
        return server.NOT_DONE_YET

    def _begin(self, request: TwistedHttpRequest, request_id: str) -> None:
        current_request_id.set(request_id)
        self._in_flight.started()
        started = time.perf_counter()
        disconnected: list[bool] = []
        request.notifyFinish().addErrback(lambda _f: disconnected.append(True))
        d = defer.Deferred.fromCoroutine(self._handle(request, request_id))

        def done(result: tuple[str, int] | Failure) -> None:
            if isinstance(result, Failure):  # a bug in this module: still answer
                logger.error("Unhandled error", exc_info=result.value)
                route_name, status = "unmatched", 500
                if not disconnected:
                    self._write(request, *self._internal_error())
            else:
                route_name, status = result
            elapsed = time.perf_counter() - started
            method = request.method.decode("ascii", "replace")
            metrics.http_requests.labels(method, route_name, str(status)).inc()
            metrics.http_request_duration.labels(method, route_name).observe(elapsed)
            logger.info(
                # The request id is on every line already (the log format's %(request)s).
                "%s - %.3fsec %d %s %s%s",
                self._client_ip(request),
                elapsed,
                status,
                method,
                _redacted_uri(request.uri),
                " (client disconnected)" if disconnected else "",
            )
            self._in_flight.finished()

        d.addBoth(done)

    async def _handle(self, request: TwistedHttpRequest, request_id: str) -> tuple[str, int]:
        """Answer the request; returns (route name for metrics, status)."""
        route_name = "unmatched"
        method = request.method.decode("ascii", "replace")
        try:
            if method == "OPTIONS":
                # CORS pre-flight: the spec forbids running the endpoint's logic.
                return "OPTIONS", self._write(request, 204, None, {})
            if self._in_flight.closing:
                # The sender will retry: better than an answer from half a server.
                raise MatrixError(503, "M_UNKNOWN", "The server is shutting down")
            path = request.path.decode("ascii", "replace")
            match = self._router.match(method, path)
            route_name = match.route.pattern
            if getattr(request, "body_too_large", False):
                raise too_large()
            http_request = self._build_request(
                request, request_id, path, match.path_params, raw_body=match.route.raw_body
            )
            await self._authenticate(http_request, match.route)
            self._ratelimit(http_request, match.route)
            result = await match.route.handler(http_request)
            if isinstance(result, FileResponse):
                status = 200
                await _send_file(request, result)
            elif isinstance(result, Response):
                status = result.status
                self._write_response(request, result)
            else:
                status = self._write(request, 200, result, {})
        except MatrixError as e:
            status = self._write(request, e.status, e.to_json(), e.headers)
        except Exception:
            logger.exception("Error handling %s %s", method, _redacted_uri(request.uri))
            status = self._write(request, *self._internal_error())
        return route_name, status

    @staticmethod
    def _internal_error() -> tuple[int, dict[str, str], dict[str, str]]:
        return 500, {"errcode": "M_UNKNOWN", "error": "Internal server error"}, {}

    def _build_request(
        self,
        request: TwistedHttpRequest,
        request_id: str,
        path: str,
        params: dict[str, str],
        *,
        raw_body: bool = False,
    ) -> HttpRequest:
        query_string = request.uri.split(b"?", 1)[1] if b"?" in request.uri else b""
        headers = {
            name.decode("latin-1").lower(): values[-1].decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        content = request.content
        if raw_body:
            body_file = content if content is not None else io.BytesIO()
            body = b""
        else:
            body_file = None
            body = content.read() if content is not None else b""
        return HttpRequest(
            method=request.method.decode("ascii"),
            path=path,
            path_params=params,
            query=_parse_query(query_string),
            headers=headers,
            body=body,
            client_ip=self._client_ip(request),
            request_id=request_id,
            is_secure=self._is_secure(request),
            body_file=body_file,
            uri=request.uri.decode("ascii", "replace"),
        )

    async def _authenticate(self, http_request: HttpRequest, route: Route) -> None:
        if route.auth is Auth.NONE:
            return
        http_request.requester = await self._authenticators[route.auth](http_request, route)

    def _ratelimit(self, http_request: HttpRequest, route: Route) -> None:
        if route.ratelimit is None:
            return
        requester = http_request.requester
        key = str(getattr(requester, "user_id", None) or requester or http_request.client_ip)
        retry_after_ms = self._ratelimiters[route.ratelimit].attempt(key)
        if retry_after_ms is not None:
            raise limit_exceeded(retry_after_ms)

    def _client_ip(self, request: TwistedHttpRequest) -> str:
        if self._x_forwarded:
            forwarded = request.getHeader("x-forwarded-for")
            if forwarded:
                return forwarded.split(",")[0].strip()
        peer = request.getClientAddress()
        return str(getattr(peer, "host", "-"))

    def _is_secure(self, request: TwistedHttpRequest) -> bool:
        if self._x_forwarded:
            proto = request.getHeader("x-forwarded-proto")
            if proto:
                return proto.lower() == "https"
        return bool(request.isSecure())

    def _write_response(self, request: TwistedHttpRequest, response: Response) -> None:
        if response.body is not None:
            _send(request, response.status, response.body, response.content_type, response.headers)
        else:
            self._write(request, response.status, response.json_body, response.headers)

    def _write(
        self, request: TwistedHttpRequest, status: int, body: Any, headers: Mapping[str, str]
    ) -> int:
        if body is None:
            _send(request, status, b"", None, headers)
        else:
            encoded = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            _send(request, status, encoded, "application/json", headers)
        return status


def _send(
    request: TwistedHttpRequest,
    status: int,
    body: bytes,
    content_type: str | None,
    headers: Mapping[str, str],
) -> None:
    if request.finished or request._disconnected:
        return
    request.setResponseCode(status)
    for name, value in CORS_HEADERS.items():
        request.setHeader(name, value)
    if content_type is not None:
        request.setHeader("Content-Type", content_type)
        request.setHeader("Cache-Control", "no-cache, no-store, must-revalidate")
    for name, value in headers.items():
        request.setHeader(name, value)
    request.setHeader("Content-Length", str(len(body)))
    if body and request.method != b"HEAD":
        request.write(body)
    request.finish()


async def _send_file(request: TwistedHttpRequest, response: FileResponse) -> None:
    """Stream the file in chunks as the client reads them; never the whole file in memory."""
    try:
        if request.finished or request._disconnected:
            return
        request.setResponseCode(200)
        for name, value in CORS_HEADERS.items():
            request.setHeader(name, value)
        for name, value in response.headers.items():
            request.setHeader(name, value)
        request.setHeader("Content-Length", str(response.length))
        if request.method != b"HEAD" and response.length > 0:
            sender = FileSender()
            sent = sender.beginFileTransfer(response.file, request)
            # A client gone mid-transfer: stop reading the file, end the request's work.
            request.notifyFinish().addErrback(lambda _f: sender.stopProducing())
            try:
                await sent
            except Exception:
                return  # disconnected; nothing more can be sent
        if not request._disconnected:
            request.finish()
    finally:
        response.file.close()


def _parse_query(raw: bytes) -> dict[bytes, list[bytes]]:
    """Query parameters as raw bytes; HttpRequest decodes them (M_INVALID_PARAM if not UTF-8).

    Latin-1 maps bytes to characters one to one, so percent-decoding through it keeps every
    byte as sent; parse_qs on bytes fails on anything that is not ASCII once decoded.
    """
    query: dict[bytes, list[bytes]] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="latin-1"):
        query.setdefault(name.encode("latin-1"), []).append(value.encode("latin-1"))
    return query


def _redacted_uri(uri: bytes) -> str:
    text = uri.decode("ascii", "replace")
    if "access_token=" not in text:
        return text
    path, _, query = text.partition("?")
    parts = [
        "access_token=<redacted>" if p.startswith("access_token=") else p for p in query.split("&")
    ]
    return path + "?" + "&".join(parts)
