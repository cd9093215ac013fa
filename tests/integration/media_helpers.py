"""Shared pieces of the media repository tests: images, uploads, a server fixture."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from urllib.parse import quote

from PIL import Image

from tests.integration.harness import HttpResult, RunningHomeserver

MEDIA = "/_matrix/media/v3"
CLIENT_MEDIA = "/_matrix/client/v1/media"


def image_bytes(
    width: int,
    height: int,
    fmt: str = "PNG",
    *,
    color: tuple[int, ...] = (200, 30, 30),
    mode: str = "RGB",
    exif_orientation: int | None = None,
) -> bytes:
    image = Image.new(mode, (width, height), color)
    # A marker in one corner, so orientation and crops can be checked.
    image.paste((0, 0, 255) if mode == "RGB" else (0, 0, 255, 255), (0, 0, width // 4, height // 4))
    out = io.BytesIO()
    kwargs: dict[str, Any] = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def animated_gif(width: int, height: int, frames: int = 3) -> bytes:
    images = [Image.new("RGB", (width, height), (i * 80, 0, 0)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return out.getvalue()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def upload(
    hs: RunningHomeserver,
    token: str,
    data: bytes,
    content_type: str | None = "application/octet-stream",
    filename: str | None = None,
) -> HttpResult:
    path = f"{MEDIA}/upload"
    if filename is not None:
        path += "?filename=" + quote(filename, safe="")
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return hs.request("POST", path, access_token=token, body=data, headers=headers)


def upload_ok(hs: RunningHomeserver, token: str, data: bytes, content_type: str, **kw: Any) -> str:
    result = upload(hs, token, data, content_type, **kw)
    assert result.status == 200, result.body
    uri: str = result.json()["content_uri"]
    assert uri.startswith("mxc://hs.test/")
    return uri[len("mxc://") :]  # server/media_id


def download(
    hs: RunningHomeserver, token: str | None, server_and_id: str, suffix: str = ""
) -> HttpResult:
    if token is None:
        return hs.request("GET", f"{MEDIA}/download/{server_and_id}{suffix}")
    return hs.request("GET", f"{CLIENT_MEDIA}/download/{server_and_id}{suffix}", access_token=token)


def store_files(media_store: Path) -> list[Path]:
    """Every file under the media store except the upload scratch folder."""
    return sorted(
        p
        for p in media_store.rglob("*")
        if p.is_file() and "tmp" not in p.relative_to(media_store).parts
    )
