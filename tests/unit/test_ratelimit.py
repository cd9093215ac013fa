"""The leaky-bucket rate limiter behind the rc_* settings."""

from __future__ import annotations

from homeserver.ratelimit import Ratelimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refuse_then_drain() -> None:
    clock = Clock()
    limiter = Ratelimiter(per_second=0.5, burst_count=3, clock=clock)
    assert [limiter.attempt("@a:hs") for _ in range(3)] == [None, None, None]
    retry = limiter.attempt("@a:hs")
    assert retry == 2000  # one action drains in 1 / 0.5 s
    assert limiter.attempt("@b:hs") is None  # keys are independent
    clock.now += 2.0
    assert limiter.attempt("@a:hs") is None
    assert limiter.attempt("@a:hs") is not None


def test_zero_limit_means_unlimited() -> None:
    limiter = Ratelimiter(per_second=0, burst_count=0, clock=Clock())
    assert all(limiter.attempt("k") is None for _ in range(1000))


def test_key_table_is_bounded() -> None:
    clock = Clock()
    limiter = Ratelimiter(per_second=1, burst_count=10, clock=clock, max_keys=100)
    for i in range(1000):
        limiter.attempt(f"key{i}")
    assert len(limiter._buckets) <= 100
