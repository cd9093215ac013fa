"""Bounds on inbound federation work per origin server (``rc_federation``), so one noisy
server cannot starve the others. Synapse's semantics:

- ``window_size``: the window in which requests are counted;
- ``sleep_limit``: requests in the window past which each new one first waits ``sleep_delay``;
- ``reject_limit``: requests waiting (sleeping or queued) past which new ones get 429;
- ``concurrent``: requests of one origin handled at the same time; the rest queue.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from twisted.internet import defer, task

from homeserver.config.model import FederationRatelimitSettings
from homeserver.errors import MatrixError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _OriginLimiter:
    def __init__(self, settings: FederationRatelimitSettings, reactor: Any) -> None:
        self._settings = settings
        self._reactor = reactor
        self.request_times: list[float] = []
        self.sleeping = 0
        self.queue: OrderedDict[object, defer.Deferred[None]] = OrderedDict()
        self.processing: set[object] = set()

    async def enter(self, token: object, origin: str) -> None:
        settings = self._settings
        now_ms = self._reactor.seconds() * 1000
        self.request_times = [t for t in self.request_times if now_ms - t < settings.window_size_ms]
        if len(self.queue) + self.sleeping > settings.reject_limit:
            retry_after = settings.window_size_ms // max(1, settings.sleep_limit)
            logger.info("rc_federation: rejecting a request from %s", origin)
            raise MatrixError(
                429,
                "M_LIMIT_EXCEEDED",
                "Too many requests",
                headers={"Retry-After": str(max(1, (retry_after + 999) // 1000))},
                retry_after_ms=retry_after,
            )
        self.request_times.append(now_ms)
        if len(self.request_times) > settings.sleep_limit:
            self.sleeping += 1
            try:
                await task.deferLater(self._reactor, settings.sleep_delay_ms / 1000, lambda: None)
            finally:
                self.sleeping -= 1
        if len(self.processing) >= settings.concurrent:
            waiter: defer.Deferred[None] = defer.Deferred()
            self.queue[token] = waiter
            try:
                await waiter
            finally:
                self.queue.pop(token, None)
        self.processing.add(token)

    def exit(self, token: object) -> None:
        self.processing.discard(token)
        # Hand the freed slot to the longest-waiting request, if any.
        while self.queue and len(self.processing) < self._settings.concurrent:
            _, waiter = self.queue.popitem(last=False)
            if not waiter.called:
                waiter.callback(None)
                break


class FederationRateLimiter:
    def __init__(self, settings: FederationRatelimitSettings, reactor: Any) -> None:
        self._settings = settings
        self._reactor = reactor
        self._origins: dict[str, _OriginLimiter] = {}

    @asynccontextmanager
    async def limit(self, origin: str) -> AsyncIterator[None]:
        """Wait for ``origin``'s turn (or raise 429 M_LIMIT_EXCEEDED), hold it for the body."""
        limiter = self._origins.get(origin)
        if limiter is None:
            limiter = self._origins[origin] = _OriginLimiter(self._settings, self._reactor)
        token = object()
        try:
            await limiter.enter(token, origin)
            yield
        finally:
            limiter.exit(token)
            if not (limiter.processing or limiter.queue or limiter.sleeping):
                self._forget_if_quiet(origin, limiter)

    def _forget_if_quiet(self, origin: str, limiter: _OriginLimiter) -> None:
        # Keep the per-origin state only while it matters: request times within the window.
        now_ms = self._reactor.seconds() * 1000
        window = self._settings.window_size_ms
        if all(now_ms - t >= window for t in limiter.request_times):
            self._origins.pop(origin, None)

    async def run(self, origin: str, work: Callable[[], Awaitable[T]]) -> T:
        async with self.limit(origin):
            return await work()
