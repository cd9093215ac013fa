"""The media repository: uploads, downloads, thumbnails, quarantine and deletion.

Local media is written to disk first (atomically, see ``files``) and recorded in the
database second; a failure between the two removes the file again, so nothing half-made is
ever served. Other servers' media comes through a ``RemoteMediaFetcher`` (federation's job);
until federation exists, ``NoRemoteMedia`` answers 404 for every other server name.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool

from homeserver.config.model import MediaConfig, ThumbnailSize
from homeserver.config.reader import is_valid_server_name
from homeserver.errors import MatrixError, invalid_param, limit_exceeded, not_found, too_large
from homeserver.media import thumbnailer
from homeserver.media.files import ContentIncomplete, ContentTooLarge, MediaFiles, StagedFile
from homeserver.media.paths import MediaPaths, is_valid_media_id
from homeserver.media.thumbnailer import Candidate, ImageInfo, ImageTooLarge, ThumbnailError
from homeserver.util.caches import LruCache
from homeserver.util.linearizer import Linearizer
from storage.media import LocalMedia, MediaStore, RemoteMedia, ThumbnailInfo

logger = logging.getLogger(__name__)

# Synapse's timeout_ms default and ceiling for media not uploaded yet.
DEFAULT_MAX_TIMEOUT_MS = 20_000
MAXIMUM_MAX_TIMEOUT_MS = 60_000
_MEDIA_ID_ALPHABET = string.ascii_letters
# type/subtype as RFC 9110 tokens, then optional parameters without control characters.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,127}"
_MEDIA_TYPE_RE = re.compile(rf"^{_TOKEN}/{_TOKEN}(\s*;[\x20-\x7e]*)?$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def is_valid_media_type(value: str) -> bool:
    return len(value) <= 255 and _MEDIA_TYPE_RE.match(value) is not None


@dataclass(frozen=True, slots=True)
class MediaContent:
    """A file ready to stream; the receiver closes ``file``."""

    file: IO[bytes]
    length: int
    media_type: str
    upload_name: str | None


class RemoteMediaFetcher(Protocol):
    """Gets another server's media into the local cache (federation implements this).

    ``fetch`` downloads the media to ``MediaPaths.remote_media(server_name, filesystem_id)``
    and records it with ``MediaStore.store_remote_media``; it raises MatrixError (404
    M_NOT_FOUND for unknown media, 502 when the server cannot be reached).
    """

    async def fetch(self, server_name: str, media_id: str, max_timeout_ms: int) -> RemoteMedia: ...


class NoRemoteMedia:
    """Until federation fetches media: every other server's media is not found."""

    async def fetch(self, server_name: str, media_id: str, max_timeout_ms: int) -> RemoteMedia:
        raise not_found("Remote media is not available on this server")


@dataclass(frozen=True, slots=True)
class _Source:
    """An uploaded file, local or cached remote, as thumbnailing needs it."""

    origin: str | None  # None: local
    media_id: str
    filesystem_id: str
    media_type: str


def cannot_overwrite() -> MatrixError:
    return MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content")


class MediaRepository:
    def __init__(
        self,
        *,
        server_name: str,
        config: MediaConfig,
        max_upload_size: int,
        store: MediaStore,
        paths: MediaPaths,
        reactor: Any,
        now_ms: Callable[[], int],
        public_baseurl: str,
        remote: RemoteMediaFetcher | None = None,
    ) -> None:
        self.server_name = server_name
        self.config = config
        self.max_upload_size = max_upload_size
        self.store = store
        self.paths = paths
        self.files = MediaFiles(paths, reactor)
        self.remote: RemoteMediaFetcher = remote or NoRemoteMedia()
        self._reactor = reactor
        self._now_ms = now_ms
        self._public_baseurl = public_baseurl
        self._upload_locks = Linearizer()
        self._thumbnail_locks = Linearizer()
        # media_id -> waiters for a reserved ID's content (GET before the async upload ends)
        self._upload_waiters: dict[str, list[defer.Deferred[None]]] = {}
        # Images never change once uploaded: their probed size can be kept.
        self._image_info: LruCache[tuple[str | None, str], ImageInfo] = LruCache(10_000)
        # Last use of each media since the last flush (written in batches, as Synapse).
        self._accessed_local: dict[str, int] = {}
        self._accessed_remote: dict[tuple[str, str], int] = {}

    def prepare(self) -> None:
        self.files.prepare()

    def is_mine(self, server_name: str) -> bool:
        return server_name == self.server_name

    # --- uploads -------------------------------------------------------------------------

    async def create_media_id(self, user_id: str) -> tuple[str, int]:
        """Reserve a media ID for a later upload: (mxc URI, unused_expires_at)."""
        now = self._now_ms()
        pending, oldest = await self.store.count_pending_media(
            user_id, now - self.config.unused_expiration_time_ms
        )
        if pending >= self.config.max_pending_media_uploads:
            raise limit_exceeded(max(1, oldest + self.config.unused_expiration_time_ms - now))
        media_id = _new_media_id()
        await self.store.reserve_media_id(
            media_id, user_id, now, self.config.enable_authenticated_media
        )
        return f"mxc://{self.server_name}/{media_id}", now + self.config.unused_expiration_time_ms

    def check_upload_headers(
        self, content_length: str | None, media_type: str | None, upload_name: str | None
    ) -> tuple[int | None, str, str | None]:
        """Validate an upload's metadata before its body is read: (length, type, name)."""
        length = None
        if content_length is not None:
            if not content_length.strip().isdigit():
                raise invalid_param("Content-Length value is invalid")
            length = int(content_length)
            if length > self.max_upload_size:
                raise too_large("Upload request body is too large")
        if media_type is None or not media_type.strip():
            media_type = "application/octet-stream"
        media_type = media_type.strip()
        if not is_valid_media_type(media_type):
            raise invalid_param("Content-Type is not a valid media type")
        if upload_name is not None:
            if _CONTROL_RE.search(upload_name):
                raise invalid_param("filename contains control characters")
            upload_name = upload_name or None
        return length, media_type, upload_name

    async def upload(
        self,
        user_id: str,
        body: IO[bytes],
        *,
        content_length: int | None,
        media_type: str,
        upload_name: str | None,
    ) -> str:
        """Store a new upload; its mxc URI."""
        staged = await self._stage(body, content_length)
        try:
            await self._check_upload_limits(user_id, staged.length)
            quarantined_by = await self._auto_quarantine(staged)
        except BaseException:
            await self.files.discard(staged)
            raise
        media_id = await self._publish_local(
            staged, user_id, media_type, upload_name, quarantined_by=quarantined_by
        )
        logger.info("stored media %s (%d bytes, %s)", media_id, staged.length, media_type)
        return f"mxc://{self.server_name}/{media_id}"

    async def upload_to(
        self,
        user_id: str,
        server_name: str,
        media_id: str,
        body: IO[bytes],
        *,
        content_length: int | None,
        media_type: str,
        upload_name: str | None,
    ) -> None:
        """Fill a media ID reserved with create_media_id (only its creator, only once)."""
        if not self.is_mine(server_name):
            raise not_found("Non-local server name specified")
        if not is_valid_media_id(media_id):
            raise not_found("Unknown media ID")
        # One upload per ID at a time: the loser of a race gets 409, never a mixed file.
        async with self._upload_locks.lock(media_id):
            media = await self.store.get_local_media(media_id)
            if media is None:
                raise not_found("Unknown media ID")
            if media.user_id != user_id:
                raise MatrixError(
                    403, "M_FORBIDDEN", "Only the creator of the media ID can upload to it"
                )
            if media.uploaded:
                raise cannot_overwrite()
            if media.created_ts < self._now_ms() - self.config.unused_expiration_time_ms:
                raise not_found("Media ID has expired")
            staged = await self._stage(body, content_length)
            destination = self.paths.local_media(media_id)
            try:
                await self._check_upload_limits(user_id, staged.length)
                quarantined_by = await self._auto_quarantine(staged)
                await self.files.publish(staged, destination)
            except BaseException:
                await self.files.discard(staged)
                raise
            try:
                filled = await self.store.fill_reserved_media(
                    media_id, media_type, staged.length, upload_name, staged.sha256, quarantined_by
                )
            except BaseException:
                await self.files.remove(destination)
                raise
            if not filled:  # cannot happen under the lock, unless another process wrote it
                raise cannot_overwrite()
        for waiter in self._upload_waiters.pop(media_id, []):
            if not waiter.called:
                waiter.callback(None)

    async def store_fetched(
        self, user_id: str, data: bytes, media_type: str, upload_name: str | None, url: str
    ) -> tuple[str, ImageInfo | None]:
        """Keep a file fetched for a URL preview as local media: (media ID, image size)."""
        staged = await self.files.stage_bytes(data)
        media_id = await self._publish_local(
            staged, user_id, media_type, upload_name, url_cache=url
        )
        info = None
        if thumbnailer.thumbnail_type_for(media_type) is not None:
            try:
                info = await self._probe(_Source(None, media_id, media_id, media_type))
            except MatrixError:
                info = None
        return media_id, info

    async def _stage(self, body: IO[bytes], content_length: int | None) -> StagedFile:
        try:
            return await self.files.stage_stream(
                body, max_length=self.max_upload_size, expected_length=content_length
            )
        except ContentTooLarge:
            raise too_large("Upload request body is too large") from None
        except ContentIncomplete:
            raise MatrixError(
                400, "M_UNKNOWN", "Upload body does not match its Content-Length"
            ) from None

    async def _publish_local(
        self,
        staged: Any,
        user_id: str,
        media_type: str,
        upload_name: str | None,
        *,
        quarantined_by: str | None = None,
        url_cache: str | None = None,
    ) -> str:
        """Move a staged file into the store, then record it; either both happen or
        neither (the file is removed if the record cannot be written). Its media ID."""
        media_id = _new_media_id()
        try:
            await self.files.publish(staged, self.paths.local_media(media_id))
        except BaseException:
            await self.files.discard(staged)
            raise
        record = LocalMedia(
            media_id=media_id,
            user_id=user_id,
            created_ts=self._now_ms(),
            media_type=media_type,
            media_length=staged.length,
            upload_name=upload_name,
            sha256=staged.sha256,
            last_access_ts=None,
            quarantined_by=quarantined_by,
            safe_from_quarantine=False,
            authenticated=self.config.enable_authenticated_media,
            url_cache=url_cache,
        )
        try:
            await self.store.store_local_media(record)
        except BaseException:
            await self.files.remove(self.paths.local_media(media_id))
            raise
        return media_id

    async def _check_upload_limits(self, user_id: str, length: int) -> None:
        """Synapse's media_upload_limits: bytes per user per period (longest period first)."""
        uploaded: int | None = None
        now = self._now_ms()
        for limit in self.config.upload_limits:
            if uploaded is None or uploaded + length > limit.max_bytes:
                uploaded = await self.store.uploaded_bytes_since(
                    user_id, now - limit.time_period_ms
                )
            if uploaded + length > limit.max_bytes:
                extra: dict[str, Any] = {"info_uri": limit.info_uri or self._public_baseurl}
                if limit.can_upgrade:
                    extra["can_upgrade"] = True
                raise MatrixError(
                    403, "M_USER_LIMIT_EXCEEDED", "Media upload limit exceeded", **extra
                )

    async def _auto_quarantine(self, staged: StagedFile) -> str | None:
        # Content identical to quarantined media is quarantined on arrival, as Synapse does.
        if await self.store.is_hash_quarantined(staged.sha256):
            logger.warning("upload matches quarantined media: quarantined")
            return "system"
        return None

    # --- downloads -----------------------------------------------------------------------

    async def get_content(
        self,
        server_name: str,
        media_id: str,
        *,
        legacy: bool,
        max_timeout_ms: int = DEFAULT_MAX_TIMEOUT_MS,
        allow_remote: bool = True,
        bypass_quarantine: bool = False,
    ) -> MediaContent:
        self._check_ids(server_name, media_id)
        if self.is_mine(server_name):
            media = await self._uploaded_local(
                media_id, legacy, max_timeout_ms, bypass_quarantine=bypass_quarantine
            )
            assert media.media_length is not None
            path = self.paths.local_media(media_id)
            file = await self.files.open(path)
            if file is None:
                logger.warning("media %s is in the database but not on disk", media_id)
                raise not_found("Media not found")
            self._accessed_local[media_id] = self._now_ms()
            return MediaContent(
                file, media.media_length, media.media_type or _OCTET, media.upload_name
            )
        remote = await self._remote(
            server_name, media_id, legacy, max_timeout_ms, allow_remote, bypass_quarantine
        )
        file = await self.files.open(self.paths.remote_media(server_name, remote.filesystem_id))
        if file is None or remote.media_length is None:
            raise not_found("Media not found")
        self._accessed_remote[(server_name, media_id)] = self._now_ms()
        return MediaContent(
            file, remote.media_length, remote.media_type or _OCTET, remote.upload_name
        )

    def _check_ids(self, server_name: str, media_id: str) -> None:
        if not is_valid_server_name(server_name):
            raise invalid_param("Invalid server name")
        if not is_valid_media_id(media_id):
            raise invalid_param("Invalid media ID")

    async def _uploaded_local(
        self, media_id: str, legacy: bool, max_timeout_ms: int, *, bypass_quarantine: bool
    ) -> LocalMedia:
        """The media's record once it has content, waiting up to max_timeout_ms for it."""
        deadline = self._now_ms() + max(0, min(max_timeout_ms, MAXIMUM_MAX_TIMEOUT_MS))
        while True:
            media = await self.store.get_local_media(media_id)
            if media is None:
                raise not_found("Media not found")
            if media.quarantined_by is not None and not bypass_quarantine:
                raise not_found("Media not found")
            if legacy and self.config.enable_authenticated_media and media.authenticated:
                # Created behind authentication: never served unauthenticated (Synapse).
                raise not_found("Media not found")
            if media.uploaded:
                return media
            if media.created_ts < self._now_ms() - self.config.unused_expiration_time_ms:
                raise not_found("Media not found")
            remaining = deadline - self._now_ms()
            if remaining <= 0:
                raise MatrixError(504, "M_NOT_YET_UPLOADED", "Media has not been uploaded yet")
            await self._wait_for_upload(media_id, remaining)

    async def _wait_for_upload(self, media_id: str, timeout_ms: int) -> None:
        waiter: defer.Deferred[None] = defer.Deferred()
        self._upload_waiters.setdefault(media_id, []).append(waiter)
        # Re-check at least every half second: another worker may have filled the ID.
        waiter.addTimeout(min(timeout_ms, 500) / 1000, self._reactor)
        try:
            await waiter
        except defer.TimeoutError:
            pass
        finally:
            waiters = self._upload_waiters.get(media_id)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._upload_waiters[media_id]

    async def _remote(
        self,
        server_name: str,
        media_id: str,
        legacy: bool,
        max_timeout_ms: int,
        allow_remote: bool,
        bypass_quarantine: bool,
    ) -> RemoteMedia:
        if server_name in self.config.prevent_media_downloads_from:
            raise not_found("Media not found")
        media = await self.store.get_remote_media(server_name, media_id)
        if media is None:
            if not allow_remote:
                raise not_found("Media not found")
            media = await self.remote.fetch(server_name, media_id, max_timeout_ms)
        if media.quarantined_by is not None and not bypass_quarantine:
            raise not_found("Media not found")
        if legacy and self.config.enable_authenticated_media and media.authenticated:
            raise not_found("Media not found")
        return media

    # --- thumbnails ----------------------------------------------------------------------

    async def get_thumbnail(
        self,
        server_name: str,
        media_id: str,
        *,
        width: int,
        height: int,
        method: str,
        animated: bool,
        legacy: bool,
        max_timeout_ms: int = DEFAULT_MAX_TIMEOUT_MS,
        allow_remote: bool = True,
    ) -> MediaContent:
        self._check_ids(server_name, media_id)
        if width < 1 or height < 1:
            raise invalid_param("width and height must be positive integers")
        if method not in ("crop", "scale"):
            raise invalid_param("method must be 'crop' or 'scale'")
        if self.is_mine(server_name):
            media = await self._uploaded_local(
                media_id, legacy, max_timeout_ms, bypass_quarantine=False
            )
            source = _Source(None, media_id, media_id, media.media_type or _OCTET)
            self._accessed_local[media_id] = self._now_ms()
        else:
            remote = await self._remote(
                server_name, media_id, legacy, max_timeout_ms, allow_remote, False
            )
            source = _Source(
                server_name, media_id, remote.filesystem_id, remote.media_type or _OCTET
            )
            self._accessed_remote[(server_name, media_id)] = self._now_ms()
        if thumbnailer.thumbnail_type_for(source.media_type) is None:
            raise MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for this type of media")
        desired_type = thumbnailer.ANIMATED_TYPE if animated else "image/png"
        stored = await self._stored_thumbnails(source)
        if self.config.dynamic_thumbnails:
            chosen = Candidate(width, height, method, desired_type)
            if method == "crop" and width * height > self.config.max_image_pixels:
                raise too_large("Requested thumbnail is too large")
            if method == "scale":
                info = await self._probe(source)
                chosen = Candidate(
                    *thumbnailer.scaled_size(info, width, height), method, desired_type
                )
        else:
            info = await self._probe(source)
            offered = _with_lengths(
                thumbnailer.candidates(
                    info, _size_tuples(self.config.thumbnail_sizes), source.media_type
                ),
                stored,
            )
            selected = thumbnailer.select(offered, width, height, method, desired_type)
            if selected is None:
                raise MatrixError(
                    400, "M_UNKNOWN", "No thumbnail of this method is configured on this server"
                )
            chosen = selected
        return await self._thumbnail(source, chosen)

    async def _stored_thumbnails(self, source: _Source) -> list[ThumbnailInfo]:
        if source.origin is None:
            return await self.store.get_local_thumbnails(source.media_id)
        return await self.store.get_remote_thumbnails(source.origin, source.media_id)

    def _source_path(self, source: _Source) -> Path:
        if source.origin is None:
            return self.paths.local_media(source.media_id)
        return self.paths.remote_media(source.origin, source.filesystem_id)

    def _thumbnail_path(self, source: _Source, c: Candidate) -> Path:
        if source.origin is None:
            return self.paths.local_thumbnail(source.media_id, c.width, c.height, c.type, c.method)
        return self.paths.remote_thumbnail(
            source.origin, source.filesystem_id, c.width, c.height, c.type, c.method
        )

    async def _probe(self, source: _Source) -> ImageInfo:
        key = (source.origin, source.media_id)
        info = self._image_info.get(key)
        if info is None:
            info = await self._image_work(
                thumbnailer.probe, self._source_path(source), self.config.max_image_pixels
            )
            self._image_info.set(key, info)
        return info

    async def _image_work(self, func: Callable[..., Any], *args: Any) -> Any:
        try:
            return await deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), func, *args
            )
        except ImageTooLarge:
            raise too_large("Image is too large to thumbnail") from None
        except FileNotFoundError:
            raise not_found("Media not found") from None
        except ThumbnailError as e:
            logger.info("cannot thumbnail: %s", e)
            raise MatrixError(
                400, "M_UNKNOWN", "Cannot generate a thumbnail for this media"
            ) from None

    async def _thumbnail(self, source: _Source, chosen: Candidate) -> MediaContent:
        path = self._thumbnail_path(source, chosen)
        async with self._thumbnail_locks.lock(path):
            file = await self.files.open(path)
            if file is not None:
                length = _file_length(file)
                return MediaContent(file, length, chosen.type, None)
            data: bytes = await self._image_work(
                thumbnailer.render,
                self._source_path(source),
                self.config.max_image_pixels,
                chosen.width,
                chosen.height,
                chosen.method,
                chosen.type,
                chosen.type == thumbnailer.ANIMATED_TYPE,
            )
            staged = await self.files.stage_bytes(data)
            try:
                await self.files.publish(staged, path)
            except BaseException:
                await self.files.discard(staged)
                raise
            info = ThumbnailInfo(chosen.width, chosen.height, chosen.method, chosen.type, len(data))
            try:
                if source.origin is None:
                    await self.store.store_local_thumbnail(source.media_id, info)
                else:
                    await self.store.store_remote_thumbnail(source.origin, source.media_id, info)
            except BaseException:
                await self.files.remove(path)
                raise
            file = await self.files.open(path)
            if file is None:
                raise not_found("Thumbnail not found")
            return MediaContent(file, len(data), chosen.type, None)

    # --- access times, quarantine, deletion ----------------------------------------------

    async def flush_access_times(self) -> None:
        local, self._accessed_local = self._accessed_local, {}
        remote, self._accessed_remote = self._accessed_remote, {}
        if local or remote:
            await self.store.update_last_access(local, remote)

    async def quarantine_media(
        self, server_name: str, media_id: str, quarantined_by: str | None
    ) -> bool:
        """Quarantine one media (None releases it); False if unknown or protected."""
        if self.is_mine(server_name):
            return await self.store.set_local_quarantine(media_id, quarantined_by)
        return await self.store.set_remote_quarantine(server_name, media_id, quarantined_by)

    async def quarantine_media_of_user(self, user_id: str, quarantined_by: str) -> int:
        return await self.store.quarantine_local_media_of_user(user_id, quarantined_by)

    async def protect_media(self, media_id: str, protected: bool = True) -> bool:
        """Protected media is never quarantined nor purged by retention."""
        return await self.store.set_protected(media_id, protected)

    async def delete_local_media(self, media_ids: Sequence[str]) -> int:
        """Delete local media (rows first, then files and thumbnails); how many existed."""
        known = [m for m in media_ids if is_valid_media_id(m)]
        found = []
        for media_id in known:
            if await self.store.get_local_media(media_id) is not None:
                found.append(media_id)
        if not found:
            return 0
        # Rows first: a crash after this leaves unreachable files, never rows without files.
        await self.store.delete_local_media_rows(found)
        for media_id in found:
            self._image_info.pop((None, media_id))
            await self.files.remove(
                self.paths.local_media(media_id), self.paths.local_thumbnails_dir(media_id)
            )
        return len(found)

    async def delete_media_of_user(self, user_id: str) -> int:
        return await self.delete_local_media(await self.store.get_local_media_of_user(user_id))

    async def delete_remote_media(self, keys: Sequence[tuple[str, str, str]]) -> int:
        """Drop cached remote media: (origin, media_id, filesystem_id) triples."""
        if not keys:
            return 0
        await self.store.delete_remote_media_rows([(o, m) for o, m, _ in keys])
        for origin, media_id, filesystem_id in keys:
            self._image_info.pop((origin, media_id))
            try:
                paths = (
                    self.paths.remote_media(origin, filesystem_id),
                    self.paths.remote_thumbnails_dir(origin, filesystem_id),
                )
            except ValueError:
                continue
            await self.files.remove(*paths)
        return len(keys)


_OCTET = "application/octet-stream"


def _new_media_id() -> str:
    return "".join(secrets.choice(_MEDIA_ID_ALPHABET) for _ in range(24))


def _size_tuples(sizes: Sequence[ThumbnailSize]) -> list[tuple[int, int, str]]:
    return [(s.width, s.height, s.method) for s in sizes]


def _with_lengths(offered: list[Candidate], stored: list[ThumbnailInfo]) -> list[Candidate]:
    lengths = {(t.width, t.height, t.method, t.type): t.length for t in stored}
    return [
        Candidate(
            c.width, c.height, c.method, c.type, lengths.get((c.width, c.height, c.method, c.type))
        )
        for c in offered
    ]


def _file_length(file: IO[bytes]) -> int:
    return os.fstat(file.fileno()).st_size
