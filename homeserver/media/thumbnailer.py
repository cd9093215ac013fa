"""Thumbnails with Pillow: which sizes to offer, choosing one, and rendering it.

``probe`` and ``render`` decode untrusted images: they are blocking and run on a thread.
Both refuse an image whose pixel count is over the limit after reading only its header,
before anything is decoded (decompression bombs).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

# The source types Hearth thumbnails, and the static thumbnail type each gets (Synapse's map:
# PNG where the source may be transparent).
THUMBNAIL_TYPE_FOR = {
    "image/jpeg": "image/jpeg",
    "image/jpg": "image/jpeg",
    "image/webp": "image/jpeg",
    "image/gif": "image/png",
    "image/png": "image/png",
}
# Animated thumbnails are WebP, as the spec recommends.
ANIMATED_TYPE = "image/webp"
# Decoders that may see untrusted input: kept to the formats above.
_PILLOW_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
_ENCODERS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
# Pillow reports MPO (JPEG stereo pairs) as multi-frame: only these are animations.
_ANIMATED_FORMATS = frozenset({"GIF", "PNG", "WEBP"})
_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the Pillow transpose that undoes it, by name: Pillow itself is
# imported only when an image is first decoded (a server that never thumbnails does not
# hold its ~2 MiB of modules and libraries).
_TRANSPOSE = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}
# Transposes that swap width and height.
_SWAPS_SIDES = frozenset({"TRANSPOSE", "ROTATE_270", "TRANSVERSE", "ROTATE_90"})


class ThumbnailError(Exception):
    """The file cannot be thumbnailed (not an image Hearth decodes, or corrupt)."""


class ImageTooLarge(ThumbnailError):
    """The image has more pixels than max_image_pixels."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    width: int  # as displayed, EXIF orientation applied
    height: int
    animated: bool
    may_have_alpha: bool


@dataclass(frozen=True, slots=True)
class Candidate:
    """A thumbnail Hearth offers for an image (generated when first asked for)."""

    width: int
    height: int
    method: str
    type: str
    length: int | None = None  # known once generated


def thumbnail_type_for(media_type: str) -> str | None:
    return THUMBNAIL_TYPE_FOR.get(media_type.split(";", 1)[0].strip().lower())


def _open(path: Path, max_pixels: int) -> Image.Image:
    from PIL import Image

    try:
        image = Image.open(path, formats=_PILLOW_FORMATS)
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(str(e)) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ThumbnailError(f"cannot read the image: {e}") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageTooLarge(f"{width}x{height} is over {max_pixels} pixels")
    return image


def _orientation(image: Image.Image) -> Image.Transpose | None:
    from PIL import Image

    try:
        value = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # EXIF parsing fails in many ways on odd files; ignore the tag then
        return None
    name = _TRANSPOSE.get(value) if isinstance(value, int) else None
    return Image.Transpose[name] if name is not None else None


def _swaps_sides(transpose: Image.Transpose | None) -> bool:
    return transpose is not None and transpose.name in _SWAPS_SIDES


def _is_animated(image: Image.Image) -> bool:
    return image.format in _ANIMATED_FORMATS and bool(getattr(image, "is_animated", False))


def probe(path: Path, max_pixels: int) -> ImageInfo:
    """Dimensions (as displayed) and kind of an image, from its header only."""
    with _open(path, max_pixels) as image:
        width, height = image.size
        if _swaps_sides(_orientation(image)):
            width, height = height, width
        may_have_alpha = "A" in image.getbands() or (
            image.mode == "P" and "transparency" in image.info
        )
        return ImageInfo(width, height, _is_animated(image), may_have_alpha)


def aspect(info: ImageInfo, max_width: int, max_height: int) -> tuple[int, int]:
    """The largest size with the image's aspect ratio that fits in the box (never 0)."""
    if max_width * info.height < max_height * info.width:
        return max_width, max((max_width * info.height) // info.width, 1)
    return max((max_height * info.width) // info.height, 1), max_height


def scaled_size(info: ImageInfo, width: int, height: int) -> tuple[int, int]:
    """A "scale" thumbnail's size: fits the box, keeps the aspect, never upscales."""
    t_width, t_height = aspect(info, width, height)
    return min(info.width, t_width), min(info.height, t_height)


def candidates(
    info: ImageInfo, sizes: Iterable[tuple[int, int, str]], media_type: str
) -> list[Candidate]:
    """The thumbnails offered for an image with the configured ``thumbnail_sizes``.

    As Synapse: a crop size is dropped when a scale size comes out at the same dimensions,
    and an animated image also gets an animated WebP of each size.
    """
    static_type = thumbnail_type_for(media_type)
    if static_type is None:
        return []
    if static_type == "image/jpeg" and info.may_have_alpha:
        static_type = "image/png"  # JPEG would flatten the transparency
    chosen: dict[tuple[int, int, str], str] = {}
    for width, height, method in sizes:
        if method == "crop":
            chosen.setdefault((width, height, static_type), method)
        else:
            t_width, t_height = scaled_size(info, width, height)
            chosen[(t_width, t_height, static_type)] = method
    offered = [Candidate(w, h, m, t) for (w, h, t), m in chosen.items()]
    if info.animated:
        seen = set()
        for c in list(offered):
            if (c.width, c.height, c.method) not in seen:
                seen.add((c.width, c.height, c.method))
                offered.append(Candidate(c.width, c.height, c.method, ANIMATED_TYPE))
    return offered


def select(
    candidates: Sequence[Candidate],
    desired_width: int,
    desired_height: int,
    desired_method: str,
    desired_type: str,
) -> Candidate | None:
    """The offered thumbnail closest to the request, by Synapse's ranking.

    Prefer: the request's aspect ratio (crop), at least the requested size, the closest
    size, the requested type, then the smallest file.
    """
    big_enough: list[tuple[Any, ...]] = []
    too_small: list[tuple[Any, ...]] = []
    d_w, d_h = desired_width, desired_height
    for index, c in enumerate(candidates):
        if c.method != desired_method:
            continue
        size_quality = abs((d_w - c.width) * (d_h - c.height))
        type_quality = desired_type != c.type
        length_quality = c.length if c.length is not None else 0
        if desired_method == "crop":
            aspect_quality = abs(d_w * c.height - d_h * c.width)
            min_quality = 0 if d_w <= c.width and d_h <= c.height else 1
            key: tuple[Any, ...] = (
                aspect_quality,
                min_quality,
                size_quality,
                type_quality,
                length_quality,
                index,
            )
        else:
            key = (size_quality, type_quality, length_quality, index)
        (big_enough if c.width >= d_w or c.height >= d_h else too_small).append(key)
    pool = big_enough or too_small
    if not pool:
        return None
    return candidates[min(pool)[-1]]


def render(
    path: Path,
    max_pixels: int,
    width: int,
    height: int,
    method: str,
    output_type: str,
    animated: bool,
) -> bytes:
    """The encoded thumbnail: exactly width x height ("scale" callers pass scaled_size)."""
    from PIL import Image

    with _open(path, max_pixels) as image:
        try:
            return _render(image, width, height, method, output_type, animated)
        except Image.DecompressionBombError as e:
            raise ImageTooLarge(str(e)) from None
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise ThumbnailError(f"cannot decode the image: {e}") from None


def _render(
    image: Image.Image, width: int, height: int, method: str, output_type: str, animated: bool
) -> bytes:
    from PIL import Image, ImageSequence

    transpose = _orientation(image)
    src_w, src_h = image.size
    if _swaps_sides(transpose):
        src_w, src_h = src_h, src_w

    if method == "crop":
        if width * src_h > height * src_w:
            scaled = (width, max((width * src_h) // src_w, 1))
            top = (scaled[1] - height) // 2
            box: tuple[int, int, int, int] | None = (0, top, width, top + height)
        else:
            scaled = (max((height * src_w) // src_h, 1), height)
            left = (scaled[0] - width) // 2
            box = (left, 0, left + width, height)
    else:
        scaled, box = (width, height), None

    def transform(frame: Image.Image) -> Image.Image:
        if transpose is not None:
            frame = frame.transpose(transpose)
        frame = _resizable(frame).resize(scaled, Image.Resampling.LANCZOS)
        return frame.crop(box) if box is not None else frame

    if animated and output_type == ANIMATED_TYPE and _is_animated(image):
        frames, durations = [], []
        for frame in ImageSequence.Iterator(image):
            copy = frame.copy()
            frames.append(transform(copy if copy.mode == "RGBA" else copy.convert("RGBA")))
            durations.append(frame.info.get("duration", image.info.get("duration", 100)))
        out = io.BytesIO()
        frames[0].save(
            out,
            format="WEBP",
            save_all=True,
            append_images=frames[1:],
            loop=image.info.get("loop", 0),
            duration=durations,
            quality=80,
        )
        return out.getvalue()

    thumbnail = transform(image)
    encoder = _ENCODERS[output_type]
    if encoder == "JPEG" and thumbnail.mode != "RGB":
        thumbnail = thumbnail.convert("RGB")
    elif thumbnail.mode == "CMYK":
        thumbnail = thumbnail.convert("RGB")
    out = io.BytesIO()
    thumbnail.save(out, encoder, quality=80)
    return out.getvalue()


def _resizable(image: Image.Image) -> Image.Image:
    # Palette and 1-bit images would be resized nearest-neighbour: convert them first.
    if image.mode in ("1", "L", "P"):
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    return image
