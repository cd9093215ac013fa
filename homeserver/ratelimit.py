"""Leaky-bucket rate limiting, as Synapse's ``rc_*`` settings describe it.

Each key (a user ID or an IP address) may make ``burst_count`` actions at once; the
bucket drains at ``per_second`` actions per second.
"""

from __future__ import annotations

import math
from collections.abc import Callable


class Ratelimiter:
    def __init__(
        self,
        per_second: float,
        burst_count: float,
        clock: Callable[[], float],
        max_keys: int = 100_000,
    ) -> None:
        self.per_second = per_second
        self.burst_count = burst_count
        self._clock = clock
        self._max_keys = max_keys
        # key -> (actions in the bucket, time it was last updated)
        self._buckets: dict[str, tuple[float, float]] = {}

    def attempt(self, key: str, cost: float = 1.0) -> int | None:
        """Take ``cost`` actions for ``key``: None if allowed, else milliseconds to wait."""
        if self.per_second <= 0 and self.burst_count <= 0:
            return None  # a zero limit in config means "no limit", as in Synapse
        now = self._clock()
        level, last = self._buckets.get(key, (0.0, now))
        level = max(0.0, level - (now - last) * self.per_second)
        if level + cost > self.burst_count:
            if self.per_second <= 0:
                return 2**31 - 1
            wait_s = (level + cost - self.burst_count) / self.per_second
            return max(1, math.ceil(wait_s * 1000))
        if len(self._buckets) >= self._max_keys and key not in self._buckets:
            self._evict_drained(now)
        self._buckets[key] = (level + cost, now)
        return None

    def _evict_drained(self, now: float) -> None:
        drained = [
            k for k, (lvl, t) in self._buckets.items() if lvl - (now - t) * self.per_second <= 0
        ]
        for k in drained:
            del self._buckets[k]
        if len(self._buckets) >= self._max_keys:
            # Still full of active keys: forget the oldest half rather than grow without bound.
            ordered = sorted(self._buckets.items(), key=lambda item: item[1][1])
            for k, _ in ordered[: len(ordered) // 2]:
                del self._buckets[k]
