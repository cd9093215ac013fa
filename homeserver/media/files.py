"""The media store on disk: files written atomically, read back as streams.

A file is first written to ``tmp/`` under the store (same file system), flushed to disk,
then renamed into place: a crash or a failed upload leaves no partial file where the
media would be served from. All file I/O runs on the reactor's thread pool.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from twisted.internet.threads import deferToThreadPool

from homeserver.media.paths import MediaPaths

logger = logging.getLogger(__name__)

T = TypeVar("T")
CHUNK_SIZE = 64 * 1024


class ContentTooLarge(Exception):
    """The content is over the size limit; nothing was kept."""


class ContentIncomplete(Exception):
    """The content is shorter or longer than announced; nothing was kept."""


@dataclass(frozen=True, slots=True)
class StagedFile:
    """A fully written temporary file, ready to be published or discarded."""

    path: Path
    length: int
    sha256: str


class MediaFiles:
    def __init__(self, paths: MediaPaths, reactor: Any) -> None:
        self.paths = paths
        self._reactor = reactor

    async def _on_thread(self, func: Callable[..., T], *args: Any) -> T:
        result: T = await deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), func, *args
        )
        return result

    def prepare(self) -> None:
        """Create the store's folders; drop temporary files a crash may have left."""
        self.paths.base.mkdir(parents=True, exist_ok=True)
        temp = self.paths.temp_dir
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True, exist_ok=True)

    async def stage_stream(
        self, source: IO[bytes], *, max_length: int | None, expected_length: int | None
    ) -> StagedFile:
        """Copy ``source`` to a temporary file (hashing it); raise if too long or truncated."""
        return await self._on_thread(self._stage, source, max_length, expected_length)

    async def stage_bytes(self, data: bytes) -> StagedFile:
        return await self._on_thread(self._stage, io.BytesIO(data), None, len(data))

    def _stage(
        self, source: IO[bytes], max_length: int | None, expected_length: int | None
    ) -> StagedFile:
        fd, name = tempfile.mkstemp(dir=self.paths.temp_dir, prefix="upload-")
        path = Path(name)
        digest = hashlib.sha256()
        length = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = source.read(CHUNK_SIZE)
                    if not chunk:
                        break
                    length += len(chunk)
                    if max_length is not None and length > max_length:
                        raise ContentTooLarge()
                    if expected_length is not None and length > expected_length:
                        raise ContentIncomplete()
                    digest.update(chunk)
                    out.write(chunk)
                if expected_length is not None and length != expected_length:
                    raise ContentIncomplete()
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StagedFile(path, length, digest.hexdigest())

    async def publish(self, staged: StagedFile, destination: Path) -> None:
        """Move a staged file into place in one rename (replacing a stale leftover)."""
        await self._on_thread(_publish, staged.path, destination)

    async def discard(self, staged: StagedFile) -> None:
        await self._on_thread(staged.path.unlink, True)

    async def open(self, path: Path) -> IO[bytes] | None:
        """The file opened for reading, or None if it is not on disk."""
        return await self._on_thread(_open_or_none, path)

    async def remove(self, *paths: Path) -> None:
        await self._on_thread(_remove_all, paths)


def _publish(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, destination)
    # The rename itself must survive a crash, so flush the directory entry too.
    dir_fd = os.open(destination.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _open_or_none(path: Path) -> IO[bytes] | None:
    try:
        return open(path, "rb")  # closed by the HTTP layer once streamed
    except FileNotFoundError:
        return None


def _remove_all(paths: tuple[Path, ...]) -> None:
    for path in paths:
        try:
            if path.is_dir():
                shutil.rmtree(path)
                _prune_empty_parents(path.parent)
            else:
                path.unlink(missing_ok=True)
                _prune_empty_parents(path.parent)
        except OSError as e:
            logger.warning("could not remove %s: %s", path, e)


def _prune_empty_parents(directory: Path) -> None:
    """Remove the now empty shard folders (ab/cd/) left behind by a deletion."""
    for folder in (directory, directory.parent):
        try:
            folder.rmdir()
        except OSError:
            return
