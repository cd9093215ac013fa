"""The media repository's endpoints.

Uploads stay under ``/_matrix/media`` (as the spec keeps them); downloads, thumbnails,
config and URL previews are served authenticated under ``/_matrix/client/v1/media`` and,
unauthenticated and deprecated, under ``/_matrix/media/{r0,v1,v3}`` (refused for media
created while ``enable_authenticated_media`` was on, as Synapse).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.media.repository import DEFAULT_MAX_TIMEOUT_MS, MediaContent, MediaRepository
from homeserver.media.url_preview import UrlPreviewer
from rest.errors import MatrixError, missing_param
from rest.media.headers import media_headers
from rest.request import FileResponse, HttpRequest
from rest.router import Auth, Router

LEGACY_RELEASES = ("r0", "v1", "v3")


def _legacy(path: str) -> list[str]:
    return [f"/_matrix/media/{release}{path}" for release in LEGACY_RELEASES]


def _authenticated(path: str) -> list[str]:
    return [f"/_matrix/client/v1/media{path}"]


def _file_response(content: MediaContent, upload_name: str | None) -> FileResponse:
    return FileResponse(
        file=content.file,
        length=content.length,
        headers=media_headers(content.media_type, upload_name),
    )


def register(
    router: Router,
    repository: MediaRepository,
    previewer: UrlPreviewer | None,
    is_admin: Callable[[str], Awaitable[bool]],
) -> None:
    async def upload(request: HttpRequest) -> dict[str, Any]:
        length, media_type, name = _upload_metadata(request, repository)
        assert request.body_file is not None
        content_uri = await repository.upload(
            request.requester.user_id,
            request.body_file,
            content_length=length,
            media_type=media_type,
            upload_name=name,
        )
        return {"content_uri": content_uri}

    async def create(request: HttpRequest) -> dict[str, Any]:
        content_uri, expires_at = await repository.create_media_id(request.requester.user_id)
        return {"content_uri": content_uri, "unused_expires_at": expires_at}

    async def upload_to(request: HttpRequest) -> dict[str, Any]:
        length, media_type, name = _upload_metadata(request, repository)
        assert request.body_file is not None
        await repository.upload_to(
            request.requester.user_id,
            request.path_params["serverName"],
            request.path_params["mediaId"],
            request.body_file,
            content_length=length,
            media_type=media_type,
            upload_name=name,
        )
        return {}

    async def config(request: HttpRequest) -> dict[str, Any]:
        return {"m.upload.size": repository.max_upload_size}

    def download(legacy: bool) -> Callable[[HttpRequest], Awaitable[FileResponse]]:
        async def handler(request: HttpRequest) -> FileResponse:
            bypass = False
            if not legacy and request.query_string("admin_unsafely_bypass_quarantine") == "true":
                if not await is_admin(request.requester.user_id):
                    raise MatrixError(
                        400, "M_UNKNOWN", "Must be a server admin to bypass quarantine"
                    )
                bypass = True
            content = await repository.get_content(
                request.path_params["serverName"],
                request.path_params["mediaId"],
                legacy=legacy,
                max_timeout_ms=_timeout(request),
                allow_remote=request.query_bool("allow_remote", True) if legacy else True,
                bypass_quarantine=bypass,
            )
            name = request.path_params.get("fileName") or content.upload_name
            return _file_response(content, name)

        return handler

    def thumbnail(legacy: bool) -> Callable[[HttpRequest], Awaitable[FileResponse]]:
        async def handler(request: HttpRequest) -> FileResponse:
            width = request.query_int("width")
            height = request.query_int("height")
            if width is None or height is None:
                raise missing_param("width and height are required")
            content = await repository.get_thumbnail(
                request.path_params["serverName"],
                request.path_params["mediaId"],
                width=width,
                height=height,
                method=request.query_string("method", "scale") or "scale",
                animated=request.query_bool("animated", False),
                legacy=legacy,
                max_timeout_ms=_timeout(request),
                allow_remote=request.query_bool("allow_remote", True) if legacy else True,
            )
            extension = content.media_type.rsplit("/", 1)[-1]
            return _file_response(content, f"thumbnail.{extension}")

        return handler

    async def preview_url(request: HttpRequest) -> dict[str, Any]:
        assert previewer is not None
        request.query_int("ts")  # accepted (must be an integer), as Synapse; not used
        url = request.required_query_string("url")
        return await previewer.preview(url, request.requester.user_id)

    router.add("POST", _legacy("/upload"), upload, auth=Auth.USER, raw_body=True)
    router.add(
        "POST", "/_matrix/media/v1/create", create, auth=Auth.USER, ratelimit="rc_media_create"
    )
    router.add(
        "PUT",
        "/_matrix/media/v3/upload/{serverName}/{mediaId}",
        upload_to,
        auth=Auth.USER,
        raw_body=True,
    )
    for paths, legacy, auth in (
        (_authenticated, False, Auth.USER),
        (_legacy, True, Auth.NONE),
    ):
        router.add(
            "GET",
            paths("/download/{serverName}/{mediaId}")
            + paths("/download/{serverName}/{mediaId}/{fileName}"),
            download(legacy),
            auth=auth,
        )
        router.add("GET", paths("/thumbnail/{serverName}/{mediaId}"), thumbnail(legacy), auth=auth)
    router.add("GET", _authenticated("/config") + _legacy("/config"), config, auth=Auth.USER)
    if previewer is not None:
        router.add(
            "GET",
            _authenticated("/preview_url") + _legacy("/preview_url"),
            preview_url,
            auth=Auth.USER,
        )


def _timeout(request: HttpRequest) -> int:
    value = request.query_int("timeout_ms", DEFAULT_MAX_TIMEOUT_MS)
    assert value is not None
    return max(0, value)


def _upload_metadata(
    request: HttpRequest, repository: MediaRepository
) -> tuple[int | None, str, str | None]:
    return repository.check_upload_headers(
        request.header("content-length"),
        request.header("content-type"),
        request.query_string("filename"),
    )
