"""Stream positions handed out before a transaction and published once it has finished.

A reader must never see position N while some position below N may still be committed
later, or a /sync that saw N would miss it. ``current_token`` is therefore the highest
position below which every allocated position has finished (committed or abandoned).
"""

from __future__ import annotations

import bisect


class StreamIdGenerator:
    def __init__(self, current: int) -> None:
        self._last_allocated = current
        self._unfinished: list[int] = []

    def allocate(self, count: int = 1) -> list[int]:
        ids = list(range(self._last_allocated + 1, self._last_allocated + 1 + count))
        self._last_allocated += count
        self._unfinished.extend(ids)
        return ids

    def finished(self, ids: list[int]) -> None:
        for stream_id in ids:
            index = bisect.bisect_left(self._unfinished, stream_id)
            if index < len(self._unfinished) and self._unfinished[index] == stream_id:
                del self._unfinished[index]

    def current_token(self) -> int:
        if self._unfinished:
            return self._unfinished[0] - 1
        return self._last_allocated
