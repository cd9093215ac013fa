"""``GET /_matrix/federation/v1/media/download/{mediaId}`` and ``/thumbnail/{mediaId}``:
our own media for other servers, as ``multipart/mixed`` (an empty JSON metadata part, then
the file), streamed from disk. Only media uploaded here is served, never cached copies of
a third server's media.
"""

from __future__ import annotations

import secrets
from typing import IO, cast

from federation.media import MultipartFile, multipart_framing
from federation.ratelimit import FederationRateLimiter
from federation.transport.auth import add_federation_route
from homeserver.errors import missing_param
from homeserver.media.repository import DEFAULT_MAX_TIMEOUT_MS, MediaContent, MediaRepository
from rest.media.headers import media_headers
from rest.request import FileResponse, HttpRequest
from rest.router import Router


def _multipart(content: MediaContent, upload_name: str | None) -> FileResponse:
    boundary = secrets.token_hex(16)
    headers = media_headers(content.media_type, upload_name)
    file_headers = {
        "Content-Type": headers["Content-Type"],
        "Content-Disposition": headers["Content-Disposition"],
    }
    head, tail = multipart_framing(boundary, file_headers)
    body = MultipartFile(head, content.file, tail)
    return FileResponse(
        file=cast(IO[bytes], body),
        length=len(head) + content.length + len(tail),
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
    )


def _timeout(request: HttpRequest) -> int:
    value = request.query_int("timeout_ms", DEFAULT_MAX_TIMEOUT_MS)
    assert value is not None
    return max(0, value)


def register(
    router: Router, limiter: FederationRateLimiter | None, repository: MediaRepository
) -> None:
    async def download(request: HttpRequest) -> FileResponse:
        content = await repository.get_content(
            repository.server_name,
            request.path_params["mediaId"],
            legacy=False,
            max_timeout_ms=_timeout(request),
            allow_remote=False,
        )
        return _multipart(content, content.upload_name)

    async def thumbnail(request: HttpRequest) -> FileResponse:
        width = request.query_int("width")
        height = request.query_int("height")
        if width is None or height is None:
            raise missing_param("width and height are required")
        content = await repository.get_thumbnail(
            repository.server_name,
            request.path_params["mediaId"],
            width=width,
            height=height,
            method=request.query_string("method", "scale") or "scale",
            animated=request.query_bool("animated", False),
            legacy=False,
            max_timeout_ms=_timeout(request),
            allow_remote=False,
        )
        extension = content.media_type.rsplit("/", 1)[-1]
        return _multipart(content, f"thumbnail.{extension}")

    add_federation_route(
        router, limiter, "GET", "/_matrix/federation/v1/media/download/{mediaId}", download
    )
    add_federation_route(
        router, limiter, "GET", "/_matrix/federation/v1/media/thumbnail/{mediaId}", thumbnail
    )
