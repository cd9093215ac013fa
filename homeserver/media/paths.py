"""Where each file of the media store lives on disk.

Files are sharded by ID as Synapse lays them out (``local_content/ab/cd/efgh...``), so an
existing Synapse media store can be used as it is. Every ID is checked against the spec's
media ID grammar before it becomes part of a path: nothing can name a file outside the store.
"""

from __future__ import annotations

import re
from pathlib import Path

# The spec: a media ID consists of A-Za-z0-9, _ and -. Sharding needs five characters.
MEDIA_ID_RE = re.compile(r"^[A-Za-z0-9_-]{5,255}$")
_SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,255}$")


def is_valid_media_id(media_id: str) -> bool:
    return MEDIA_ID_RE.match(media_id) is not None


class MediaPaths:
    def __init__(self, base: Path) -> None:
        self.base = base

    @property
    def temp_dir(self) -> Path:
        """Uploads being written: on the same file system, so a rename publishes them."""
        return self.base / "tmp"

    def local_media(self, media_id: str) -> Path:
        return self.base / "local_content" / _shard(media_id)

    def local_thumbnails_dir(self, media_id: str) -> Path:
        return self.base / "local_thumbnails" / _shard(media_id)

    def local_thumbnail(
        self, media_id: str, width: int, height: int, content_type: str, method: str
    ) -> Path:
        return self.local_thumbnails_dir(media_id) / _thumbnail_name(
            width, height, content_type, method
        )

    def remote_media(self, server_name: str, filesystem_id: str) -> Path:
        return self.base / "remote_content" / _server(server_name) / _shard(filesystem_id)

    def remote_thumbnails_dir(self, server_name: str, filesystem_id: str) -> Path:
        return self.base / "remote_thumbnail" / _server(server_name) / _shard(filesystem_id)

    def remote_thumbnail(
        self,
        server_name: str,
        filesystem_id: str,
        width: int,
        height: int,
        content_type: str,
        method: str,
    ) -> Path:
        return self.remote_thumbnails_dir(server_name, filesystem_id) / _thumbnail_name(
            width, height, content_type, method
        )


def _shard(media_id: str) -> Path:
    if not is_valid_media_id(media_id):
        raise ValueError(f"not a valid media ID: {media_id!r}")
    return Path(media_id[0:2], media_id[2:4], media_id[4:])


def _server(server_name: str) -> str:
    if not _SERVER_NAME_RE.match(server_name) or server_name in (".", ".."):
        raise ValueError(f"not a valid server name: {server_name!r}")
    return server_name


def _thumbnail_name(width: int, height: int, content_type: str, method: str) -> str:
    top, _, sub = content_type.partition("/")
    name = f"{int(width)}-{int(height)}-{top}-{sub}-{method}"
    if not re.match(r"^[A-Za-z0-9.+-]+$", name):
        raise ValueError(f"not a valid thumbnail name: {name!r}")
    return name
