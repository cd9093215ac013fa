"""matrix-nio uploads an image through Hearth; another nio user downloads it and a thumbnail.

Hearth runs in-process on the Twisted reactor thread; nio runs its own asyncio loop in the
test thread, uploading through /_matrix/media/v3/upload and downloading through the
authenticated /_matrix/client/v1/media endpoints, as real clients do.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nio import (
    AsyncClient,
    DownloadError,
    MemoryDownloadResponse,
    RegisterResponse,
    ResizingMethod,
    ThumbnailResponse,
    UploadResponse,
)
from PIL import Image

from tests.integration.harness import RunningHomeserver, make_config, start_homeserver
from tests.integration.media_helpers import image_bytes

pytestmark = pytest.mark.slow


@pytest.fixture
def hs(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    config = make_config(
        tmp_path,
        db_config,
        enable_registration=True,
        enable_registration_without_verification=True,
        rc_registration={"per_second": 0, "burst_count": 0},
    )
    running = start_homeserver(config, reactor_thread, run_sync)
    yield running
    running.stop()


async def _share_a_photo(base_url: str) -> None:
    alice = AsyncClient(base_url, "alice")
    bob = AsyncClient(base_url, "bob")
    try:
        for client, name in ((alice, "alice"), (bob, "bob")):
            registered = await client.register(name, f"{name}-password", f"{name} device")
            assert isinstance(registered, RegisterResponse), registered

        photo = image_bytes(1024, 768, "JPEG")
        uploaded, _keys = await alice.upload(
            io.BytesIO(photo),
            content_type="image/jpeg",
            filename="holiday photo.jpg",
            filesize=len(photo),
        )
        assert isinstance(uploaded, UploadResponse), uploaded
        assert uploaded.content_uri.startswith("mxc://hs.test/")

        downloaded = await bob.download(mxc=uploaded.content_uri)
        assert isinstance(downloaded, MemoryDownloadResponse), downloaded
        assert downloaded.body == photo
        assert downloaded.content_type == "image/jpeg"
        assert downloaded.filename == "holiday photo.jpg"

        server_name, media_id = uploaded.content_uri[len("mxc://") :].split("/")
        thumbnail = await bob.thumbnail(server_name, media_id, 320, 240, ResizingMethod.scale)
        assert isinstance(thumbnail, ThumbnailResponse), thumbnail
        assert thumbnail.content_type == "image/jpeg"
        with Image.open(io.BytesIO(thumbnail.body)) as image:
            assert image.size == (320, 240)
        cropped = await bob.thumbnail(server_name, media_id, 32, 32, ResizingMethod.crop)
        assert isinstance(cropped, ThumbnailResponse), cropped
        with Image.open(io.BytesIO(cropped.body)) as image:
            assert image.size == (32, 32)

        missing = await bob.download(mxc=f"mxc://{server_name}/{'A' * 24}")
        assert isinstance(missing, DownloadError), missing
        assert missing.status_code == "M_NOT_FOUND"
    finally:
        await alice.close()
        await bob.close()


def test_nio_shares_a_photo_through_hearth(hs: RunningHomeserver) -> None:
    asyncio.run(_share_a_photo(f"http://127.0.0.1:{hs.port}"))
