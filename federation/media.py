"""Media across servers: other servers' media fetched into our cache, ours served to them.

Fetching uses the authenticated ``GET /_matrix/federation/v1/media/download/{mediaId}``
(spec v1.11): a signed request whose answer is ``multipart/mixed`` with a JSON part and
the file. A server that does not know that endpoint (404/400 ``M_UNRECOGNIZED``) is asked
through the older ``/_matrix/media/v3/download/{serverName}/{mediaId}?allow_remote=false``,
as Synapse does. Nothing longer than ``max_upload_size`` is accepted. The file lands in the
media store under a name of our own choosing and is recorded in ``remote_media_cache``;
thumbnails of it are then made here, from the cached original, by the media repository.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol
from urllib.parse import unquote

from federation.client import FederationError, HttpResponseError, ResponseTooLarge, federation_path
from homeserver.errors import MatrixError, not_found
from homeserver.media.files import MediaFiles
from homeserver.media.paths import MediaPaths
from homeserver.util.linearizer import Linearizer
from storage.media import MediaStore, RemoteMedia

logger = logging.getLogger(__name__)

CRLF = b"\r\n"


class MediaRequests(Protocol):
    async def request(
        self,
        method: str,
        destination: str,
        path: str,
        args: Any = None,
        data: Any = None,
        timeout: float | None = None,
        max_size: int | None = None,
    ) -> Any: ...


class MultipartError(ValueError):
    pass


@dataclass(frozen=True)
class Part:
    headers: dict[str, str]  # lower-cased names
    content: bytes


def boundary_of(content_type: str) -> bytes:
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/mixed":
        raise MultipartError(f"expected multipart/mixed, got {kind.strip()!r}")
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary" and value:
            return value.strip().strip('"').encode("ascii")
    raise MultipartError("multipart/mixed without a boundary")


def parse_multipart(body: bytes, boundary: bytes) -> list[Part]:
    """The parts of a multipart body (RFC 2046), bytes kept exactly as sent."""
    delimiter = b"--" + boundary
    if body.startswith(delimiter):
        pos = len(delimiter)
    else:
        start = body.find(CRLF + delimiter)
        if start < 0:
            raise MultipartError("no boundary in the body")
        pos = start + 2 + len(delimiter)
    parts: list[Part] = []
    while True:
        if body[pos : pos + 2] == b"--":
            return parts
        line_end = body.find(CRLF, pos)  # skips the delimiter's transport padding
        if line_end < 0:
            raise MultipartError("truncated multipart body")
        pos = line_end + 2
        end = body.find(CRLF + delimiter, pos)
        if end < 0:
            raise MultipartError("multipart body without its closing boundary")
        raw = body[pos:end]
        if raw.startswith(CRLF):
            head, content = b"", raw[2:]
        else:
            head, separator, content = raw.partition(CRLF + CRLF)
            if not separator:
                raise MultipartError("a part without the blank line after its headers")
        headers: dict[str, str] = {}
        for line in head.split(CRLF):
            if line:
                name, colon, value = line.decode("latin-1").partition(":")
                if not colon:
                    raise MultipartError("malformed part header")
                headers[name.strip().lower()] = value.strip()
        parts.append(Part(headers, content))
        pos = end + 2 + len(delimiter)


def upload_name_of(disposition: str | None) -> str | None:
    """The file name a Content-Disposition gives (``filename*=utf-8''...`` preferred)."""
    if not disposition:
        return None
    plain: str | None = None
    for param in disposition.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        name = name.strip().lower()
        value = value.strip()
        if name == "filename*" and value.lower().startswith("utf-8''"):
            return unquote(value[7:], encoding="utf-8", errors="replace") or None
        if name == "filename":
            plain = value.strip('"') or None
    return plain


class FederationMediaFetcher:
    """The media repository's ``RemoteMediaFetcher``."""

    def __init__(
        self,
        *,
        client: MediaRequests,
        store: MediaStore,
        paths: MediaPaths,
        files: MediaFiles,
        max_size: int,
        authenticated: bool,
        now_ms: Callable[[], int],
    ) -> None:
        self.client = client
        self.store = store
        self.paths = paths
        self.files = files
        self.max_size = max_size
        self.authenticated = authenticated
        self.now_ms = now_ms
        self._locks = Linearizer()

    async def fetch(self, server_name: str, media_id: str, max_timeout_ms: int) -> RemoteMedia:
        # One download per media at a time; the others find it in the cache.
        async with self._locks.lock((server_name, media_id)):
            cached = await self.store.get_remote_media(server_name, media_id)
            if cached is not None:
                return cached
            content, media_type, upload_name = await self._download(
                server_name, media_id, max_timeout_ms
            )
            return await self._keep(server_name, media_id, content, media_type, upload_name)

    async def _download(
        self, server_name: str, media_id: str, max_timeout_ms: int
    ) -> tuple[bytes, str | None, str | None]:
        # Room for the multipart framing around a file of the largest size allowed.
        limit = self.max_size + 64 * 1024
        timeout = max(max_timeout_ms, 1000) / 1000 + 10
        args = {"timeout_ms": str(max_timeout_ms)}
        try:
            response = await self.client.request(
                "GET",
                server_name,
                federation_path("/_matrix/federation/v1/media/download/%s", media_id),
                args=args,
                timeout=timeout,
                max_size=limit,
            )
        except HttpResponseError as e:
            if _unrecognized(e):
                return await self._download_legacy(server_name, media_id, args, timeout)
            raise _remote_error(server_name, e) from None
        except ResponseTooLarge:
            raise _too_large() from None
        except FederationError as e:
            raise _unreachable(server_name, e) from None
        try:
            parts = parse_multipart(
                response.body, boundary_of(response.headers.get("content-type", ""))
            )
        except MultipartError as e:
            logger.info("media %s/%s: bad multipart answer: %s", server_name, media_id, e)
            raise _unreachable(server_name, e) from None
        if len(parts) < 2:
            raise _unreachable(server_name, MultipartError("fewer than two parts"))
        file_part = parts[1]
        if "location" in file_part.headers:
            # Spec: the bytes are elsewhere. Not followed (yet): an arbitrary URL needs its
            # own address filtering before it may be fetched.
            logger.info("media %s/%s is behind a Location redirect", server_name, media_id)
            raise _unreachable(server_name, MultipartError("redirected media is not fetched"))
        if len(file_part.content) > self.max_size:
            raise _too_large()
        return (
            file_part.content,
            file_part.headers.get("content-type"),
            upload_name_of(file_part.headers.get("content-disposition")),
        )

    async def _download_legacy(
        self, server_name: str, media_id: str, args: dict[str, str], timeout: float
    ) -> tuple[bytes, str | None, str | None]:
        path = federation_path("/_matrix/media/v3/download/%s/%s", server_name, media_id)
        try:
            response = await self.client.request(
                "GET",
                server_name,
                path,
                args={**args, "allow_remote": "false"},
                timeout=timeout,
                max_size=self.max_size,
            )
        except HttpResponseError as e:
            raise _remote_error(server_name, e) from None
        except ResponseTooLarge:
            raise _too_large() from None
        except FederationError as e:
            raise _unreachable(server_name, e) from None
        return (
            response.body,
            response.headers.get("content-type"),
            upload_name_of(response.headers.get("content-disposition")),
        )

    async def _keep(
        self,
        server_name: str,
        media_id: str,
        content: bytes,
        media_type: str | None,
        upload_name: str | None,
    ) -> RemoteMedia:
        staged = await self.files.stage_bytes(content)
        filesystem_id = secrets.token_urlsafe(18)
        destination = self.paths.remote_media(server_name, filesystem_id)
        try:
            await self.files.publish(staged, destination)
        except BaseException:
            await self.files.discard(staged)
            raise
        now = self.now_ms()
        media = RemoteMedia(
            media_origin=server_name,
            media_id=media_id,
            media_type=media_type or "application/octet-stream",
            media_length=staged.length,
            upload_name=upload_name,
            created_ts=now,
            last_access_ts=now,
            filesystem_id=filesystem_id,
            quarantined_by=None,
            authenticated=self.authenticated,
            sha256=staged.sha256,
        )
        try:
            await self.store.store_remote_media(media)
        except BaseException:
            await self.files.remove(destination)
            raise
        if await self.store.is_hash_quarantined(staged.sha256):
            # The same bytes were quarantined before: so is this copy (as for uploads).
            await self.store.set_remote_quarantine(server_name, media_id, "system")
            refreshed = await self.store.get_remote_media(server_name, media_id)
            if refreshed is not None:
                return refreshed
        return media


def _unrecognized(error: HttpResponseError) -> bool:
    return error.status in (400, 404, 405) and error.errcode == "M_UNRECOGNIZED"


def _remote_error(server_name: str, error: HttpResponseError) -> MatrixError:
    if error.status == 404:
        return not_found("Media not found")
    if error.status == 504 and error.errcode == "M_NOT_YET_UPLOADED":
        return MatrixError(504, "M_NOT_YET_UPLOADED", "Media has not been uploaded yet")
    if error.status == 502 or error.status == 413:
        return _too_large()
    return _unreachable(server_name, error)


def _unreachable(server_name: str, error: Exception) -> MatrixError:
    logger.info("remote media from %s unavailable: %s", server_name, error)
    return MatrixError(502, "M_UNKNOWN", f"Failed to fetch remote media from {server_name}")


def _too_large() -> MatrixError:
    return MatrixError(502, "M_TOO_LARGE", "Remote media is larger than this server accepts")


# --- serving ours ---------------------------------------------------------------------------


class MultipartFile:
    """A JSON part and a file part as one readable stream, for ``FileResponse``: the file
    is streamed, never read into memory whole."""

    def __init__(self, head: bytes, file: IO[bytes], tail: bytes) -> None:
        self._pieces: Iterator[IO[bytes] | bytes] = iter([head, file, tail])
        self._current: IO[bytes] | bytes | None = next(self._pieces)
        self._file = file
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while self._current is not None and (size < 0 or len(out) < size):
            want = -1 if size < 0 else size - len(out)
            if isinstance(self._current, bytes):
                end = len(self._current) if want < 0 else self._offset + want
                chunk = self._current[self._offset : end]
                self._offset += len(chunk)
                exhausted = self._offset >= len(self._current)
            else:
                chunk = self._current.read(want)
                exhausted = not chunk
            out += chunk
            if exhausted:
                self._current = next(self._pieces, None)
                self._offset = 0
        return bytes(out)

    def close(self) -> None:
        self._file.close()


def multipart_framing(boundary: str, file_headers: dict[str, str]) -> tuple[bytes, bytes]:
    """What goes before and after the file's bytes: the (empty) JSON metadata part and the
    file part's headers; then the closing delimiter."""
    head = (
        CRLF
        + b"--"
        + boundary.encode()
        + CRLF
        + b"Content-Type: application/json"
        + CRLF
        + CRLF
        + b"{}"
        + CRLF
        + b"--"
        + boundary.encode()
        + CRLF
        + b"".join(f"{k}: {v}".encode("latin-1") + CRLF for k, v in file_headers.items())
        + CRLF
    )
    tail = CRLF + b"--" + boundary.encode() + b"--" + CRLF
    return head, tail
