"""Run async work for one key at a time (e.g. one event being created per room)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from twisted.internet import defer


class Linearizer:
    def __init__(self) -> None:
        # key -> waiters queued behind the current holder
        self._queues: dict[object, list[defer.Deferred[None]]] = {}

    @asynccontextmanager
    async def lock(self, key: object) -> AsyncIterator[None]:
        queue = self._queues.get(key)
        if queue is None:
            self._queues[key] = []
        else:
            waiter: defer.Deferred[None] = defer.Deferred()
            queue.append(waiter)
            await waiter
        try:
            yield
        finally:
            queue = self._queues[key]
            if queue:
                queue.pop(0).callback(None)
            else:
                del self._queues[key]
