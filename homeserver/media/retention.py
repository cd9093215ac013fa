"""Periodic media housekeeping: last-access times, and Synapse's ``media_retention``.

Media not used (downloaded or thumbnailed) for the configured lifetime is deleted, local
and cached remote separately. As Synapse, retention keeps quarantined and protected media
and local media in use as a user's or a room's avatar.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet import task

from homeserver.media.repository import MediaRepository

logger = logging.getLogger(__name__)

# Synapse's periods: access times are written in batches, retention runs hourly.
ACCESS_FLUSH_INTERVAL_S = 60.0
RETENTION_INTERVAL_S = 3600.0


class MediaHousekeeping:
    def __init__(self, repository: MediaRepository, reactor: Any) -> None:
        self._repository = repository
        self._config = repository.config
        self._loops: list[task.LoopingCall] = []
        self._reactor = reactor

    @property
    def retention_enabled(self) -> bool:
        return (
            self._config.local_media_lifetime_ms is not None
            or self._config.remote_media_lifetime_ms is not None
        )

    def start(self) -> None:
        self._start(self._flush, ACCESS_FLUSH_INTERVAL_S, now=False)
        if self.retention_enabled:
            self._start(self.purge, RETENTION_INTERVAL_S, now=True)

    def _start(self, work: Any, interval: float, *, now: bool) -> None:
        loop = task.LoopingCall(self._guarded, work)
        loop.clock = self._reactor
        self._loops.append(loop)
        loop.start(interval, now=now)

    async def stop(self) -> None:
        loops, self._loops = self._loops, []
        for loop in loops:
            if loop.running:
                loop.stop()
        await self._flush()

    async def _guarded(self, work: Any) -> None:
        # A failing run is logged and retried next period; it must not end the loop.
        try:
            await work()
        except Exception:
            logger.exception("media housekeeping failed")

    async def _flush(self) -> None:
        await self._repository.flush_access_times()

    async def purge(self) -> tuple[int, int]:
        """Apply media_retention now: (local media deleted, remote media deleted)."""
        repository = self._repository
        await repository.flush_access_times()
        now = repository._now_ms()
        local_deleted = remote_deleted = 0
        if self._config.remote_media_lifetime_ms is not None:
            before = now - self._config.remote_media_lifetime_ms
            remote_deleted = await repository.delete_remote_media(
                await repository.store.get_remote_media_before(before)
            )
        if self._config.local_media_lifetime_ms is not None:
            before = now - self._config.local_media_lifetime_ms
            media_ids = await repository.store.get_local_media_before(
                before, keep_avatars_of=repository.server_name
            )
            local_deleted = await repository.delete_local_media(media_ids)
        if local_deleted or remote_deleted:
            logger.info(
                "media retention deleted %d local and %d remote media",
                local_deleted,
                remote_deleted,
            )
        return local_deleted, remote_deleted
