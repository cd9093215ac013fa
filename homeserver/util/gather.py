"""Await independent pieces of work together."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from twisted.internet import defer

T = TypeVar("T")


async def value(result: T) -> T:
    """An awaitable of a value already known (a branch with nothing to read)."""
    return result


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def gather(*awaitables: Awaitable[Any]) -> list[Any]:
    """The results of ``awaitables``, run concurrently: each database read is its own
    transaction on the pool, so their round trips overlap instead of queueing one after
    another. The first failure is raised as itself (not wrapped in FirstError)."""
    try:
        return await defer.gatherResults(
            [defer.ensureDeferred(_awaited(a)) for a in awaitables], consumeErrors=True
        )
    except defer.FirstError as e:
        e.subFailure.raiseException()
        raise  # unreachable: raiseException always raises
