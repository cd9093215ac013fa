"""The per-origin rc_federation limiter (Synapse's semantics) on a test clock."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task

from federation.ratelimit import FederationRateLimiter
from homeserver.config.model import FederationRatelimitSettings
from homeserver.errors import MatrixError


def settings(**overrides: int) -> FederationRatelimitSettings:
    values = {
        "window_size_ms": 1000,
        "sleep_limit": 10,
        "sleep_delay_ms": 500,
        "reject_limit": 50,
        "concurrent": 3,
    }
    values.update(overrides)
    return FederationRatelimitSettings(**values)


class Work:
    """A request body that runs until released."""

    def __init__(self, limiter: FederationRateLimiter, origin: str) -> None:
        self.started = False
        self.release: defer.Deferred[None] = defer.Deferred()
        self.done = defer.ensureDeferred(limiter.run(origin, self._body))

    async def _body(self) -> None:
        self.started = True
        await self.release


def test_concurrency_is_per_origin() -> None:
    clock: Any = task.Clock()
    limiter = FederationRateLimiter(settings(concurrent=2), clock)
    first = [Work(limiter, "a.example") for _ in range(3)]
    other = Work(limiter, "b.example")
    assert [w.started for w in first] == [True, True, False]
    assert other.started  # another origin is not held up
    first[0].release.callback(None)
    assert first[2].started  # the queued request takes the freed slot
    for w in (first[1], first[2], other):
        w.release.callback(None)
    assert all(w.done.called for w in [*first, other])


def test_sleep_then_reject() -> None:
    clock: Any = task.Clock()
    limiter = FederationRateLimiter(settings(sleep_limit=2, reject_limit=1, concurrent=10), clock)
    running = [Work(limiter, "a.example") for _ in range(2)]
    assert all(w.started for w in running)
    # Past sleep_limit in the window: requests wait sleep_delay before starting.
    sleepers = [Work(limiter, "a.example") for _ in range(2)]
    assert not any(w.started for w in sleepers)
    # Past reject_limit waiting: refused with 429.
    rejected = Work(limiter, "a.example")
    errors: list[Any] = []
    rejected.done.addErrback(lambda f: errors.append(f.value))
    assert not rejected.started
    [error] = errors
    assert isinstance(error, MatrixError)
    assert (error.status, error.errcode) == (429, "M_LIMIT_EXCEEDED")
    clock.advance(0.5)
    assert all(w.started for w in sleepers)
    for w in [*running, *sleepers]:
        w.release.callback(None)
