"""Thumbnails over real HTTP, on both engines: sizes, methods, EXIF, animation, limits."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.integration.harness import HttpResult, RunningHomeserver, make_config, start_homeserver
from tests.integration.media_helpers import (
    CLIENT_MEDIA,
    animated_gif,
    image_bytes,
    size_of,
    upload_ok,
)


@pytest.fixture
def start(tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any) -> Iterator[Any]:
    started: list[RunningHomeserver] = []

    def start_with(**extra: Any) -> RunningHomeserver:
        running = start_homeserver(
            make_config(tmp_path, db_config, **extra), reactor_thread, run_sync
        )
        started.append(running)
        return running

    yield start_with
    for running in started:
        running.stop()


def thumbnail(hs: RunningHomeserver, token: str, media: str, query: str) -> HttpResult:
    return hs.request("GET", f"{CLIENT_MEDIA}/thumbnail/{media}?{query}", access_token=token)


def test_configured_sizes_chosen_as_synapse_does(start: Any) -> None:
    hs = start()
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    media = upload_ok(hs, alice.access_token, image_bytes(1000, 800), "image/png")
    token = bob.access_token

    crop = thumbnail(hs, token, media, "width=32&height=32&method=crop")
    assert crop.status == 200
    assert crop.headers["content-type"] == "image/png"
    assert crop.headers["content-disposition"] == "inline; filename=thumbnail.png"
    assert crop.headers["cross-origin-resource-policy"] == "cross-origin"
    assert size_of(crop.body) == (32, 32)
    # 50x50 crop: the nearest configured crop at least that big is 96x96.
    assert size_of(thumbnail(hs, token, media, "width=50&height=50&method=crop").body) == (96, 96)
    # scale keeps the aspect ratio: 320x240 box -> 300x240 for a 5:4 image.
    assert size_of(thumbnail(hs, token, media, "width=320&height=240&method=scale").body) == (
        300,
        240,
    )
    assert size_of(thumbnail(hs, token, media, "width=600&height=450").body) == (600, 480)
    # Larger than any configured size: the largest one; never upscaled beyond the source.
    assert size_of(thumbnail(hs, token, media, "width=5000&height=5000").body) == (750, 600)

    # Cached: recorded once in the database, the same bytes served again.
    again = thumbnail(hs, token, media, "width=32&height=32&method=crop")
    assert again.body == crop.body
    database = hs.homeserver.database
    assert database is not None
    rows = hs.run_sync(
        database.execute(
            "test", "SELECT width, height, method, type FROM local_media_thumbnails ORDER BY width"
        )
    )
    assert [tuple(r) for r in rows] == [
        (32, 32, "crop", "image/png"),
        (96, 96, "crop", "image/png"),
        (300, 240, "scale", "image/png"),
        (600, 480, "scale", "image/png"),
        (750, 600, "scale", "image/png"),
    ]


def test_jpeg_thumbnails_and_exif_orientation(start: Any) -> None:
    hs = start()
    alice = hs.register_user("alice")
    # Stored 200x100 landscape, but EXIF orientation 6 says: display rotated, 100x200.
    media = upload_ok(
        hs, alice.access_token, image_bytes(200, 100, "JPEG", exif_orientation=6), "image/jpeg"
    )
    result = thumbnail(hs, alice.access_token, media, "width=800&height=600&method=scale")
    assert result.status == 200
    assert result.headers["content-type"] == "image/jpeg"
    assert size_of(result.body) == (100, 200)
    # The blue marker was top-left before rotation; rotated 90° clockwise it is top-right.
    with Image.open(io.BytesIO(result.body)) as image:
        rgb = image.convert("RGB")
        top_right = rgb.getpixel((95, 5))
        top_left = rgb.getpixel((5, 5))
    assert isinstance(top_right, tuple) and top_right[2] > 200 and top_right[0] < 60
    assert isinstance(top_left, tuple) and top_left[0] > 150


def test_dynamic_thumbnails_exact_sizes(start: Any) -> None:
    hs = start(dynamic_thumbnails=True)
    alice = hs.register_user("alice")
    media = upload_ok(hs, alice.access_token, image_bytes(400, 400), "image/png")
    crop = thumbnail(hs, alice.access_token, media, "width=123&height=45&method=crop")
    assert size_of(crop.body) == (123, 45)
    scale = thumbnail(hs, alice.access_token, media, "width=123&height=45&method=scale")
    assert size_of(scale.body) == (45, 45)


def test_animated_thumbnails(start: Any) -> None:
    hs = start()
    alice = hs.register_user("alice")
    media = upload_ok(hs, alice.access_token, animated_gif(120, 90, frames=4), "image/gif")
    animated = thumbnail(
        hs, alice.access_token, media, "width=96&height=96&method=crop&animated=true"
    )
    assert animated.status == 200
    assert animated.headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(animated.body)) as image:
        assert image.size == (96, 96)
        assert getattr(image, "n_frames", 1) == 4
    static = thumbnail(hs, alice.access_token, media, "width=96&height=96&method=crop")
    assert static.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(static.body)) as image:
        assert getattr(image, "n_frames", 1) == 1


def test_thumbnail_errors(start: Any, tmp_path: Path) -> None:
    hs = start(max_image_pixels=10_000)
    alice = hs.register_user("alice")
    token = alice.access_token

    def error(result: HttpResult) -> tuple[int, str]:
        return result.status, result.json()["errcode"]

    # Over max_image_pixels: refused from the header, before decoding.
    bomb = upload_ok(hs, token, image_bytes(200, 200), "image/png")
    assert error(thumbnail(hs, token, bomb, "width=32&height=32&method=crop")) == (
        413,
        "M_TOO_LARGE",
    )
    small = upload_ok(hs, token, image_bytes(50, 50), "image/png")
    assert thumbnail(hs, token, small, "width=32&height=32&method=crop").status == 200
    for query, expected in (
        ("height=32", (400, "M_MISSING_PARAM")),
        ("width=0&height=32", (400, "M_INVALID_PARAM")),
        ("width=abc&height=32", (400, "M_INVALID_PARAM")),
        ("width=32&height=32&method=stretch", (400, "M_INVALID_PARAM")),
        ("width=32&height=32&animated=maybe", (400, "M_INVALID_PARAM")),
    ):
        assert error(thumbnail(hs, token, small, query)) == expected, query
    text = upload_ok(hs, token, b"not an image", "text/plain")
    assert error(thumbnail(hs, token, text, "width=32&height=32")) == (400, "M_UNKNOWN")
    # Claims to be a PNG but is not one.
    liar = upload_ok(hs, token, b"\x89PNG but not really", "image/png")
    assert error(thumbnail(hs, token, liar, "width=32&height=32")) == (400, "M_UNKNOWN")
    thumbs = list((tmp_path / "media_store").glob("local_thumbnails/**/*-*-*"))
    assert all(p.is_file() for p in thumbs) and len(thumbs) == 1
