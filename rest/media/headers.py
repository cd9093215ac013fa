"""The headers a media download carries so that a served file cannot attack the origin."""

from __future__ import annotations

from urllib.parse import quote

# The spec's "Serving inline content" list; everything else is an attachment. SVG and HTML
# are deliberately absent: they can carry script.
INLINE_CONTENT_TYPES = frozenset(
    {
        "text/css",
        "text/plain",
        "text/csv",
        "application/json",
        "application/ld+json",
        "image/jpeg",
        "image/gif",
        "image/png",
        "image/apng",
        "image/webp",
        "image/avif",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "video/quicktime",
        "audio/mp4",
        "audio/webm",
        "audio/aac",
        "audio/mpeg",
        "audio/ogg",
        "audio/wave",
        "audio/wav",
        "audio/x-wav",
        "audio/x-pn-wav",
        "audio/flac",
        "audio/x-flac",
    }
)
# Text types served with a UTF-8 charset when the upload named none (as Synapse).
TEXT_CONTENT_TYPES = frozenset(
    {
        "text/css",
        "text/csv",
        "text/html",
        "text/calendar",
        "text/plain",
        "text/javascript",
        "application/json",
        "application/ld+json",
        "application/rtf",
        "image/svg+xml",
        "text/xml",
    }
)
CONTENT_SECURITY_POLICY = (
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf;"
    " style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
)
# RFC 2616 separators: a name with any of them (or non-ASCII) goes in filename*.
_SEPARATORS = frozenset('()<>@,;:\\"/[]?={}')


def media_headers(media_type: str, upload_name: str | None) -> dict[str, str]:
    base_type = media_type.split(";", 1)[0].strip().lower()
    content_type = media_type
    if media_type.lower() in TEXT_CONTENT_TYPES:
        content_type = media_type + "; charset=UTF-8"
    disposition = "inline" if base_type in INLINE_CONTENT_TYPES else "attachment"
    if upload_name:
        if _is_token(upload_name):
            disposition += f"; filename={upload_name}"
        else:
            disposition += f"; filename*=utf-8''{quote(upload_name.encode('utf-8'), safe='')}"
    return {
        "Content-Type": content_type,
        "Content-Disposition": disposition,
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Security-Policy": "sandbox;",  # the older, non-standard form
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "Referrer-Policy": "no-referrer",
        # Media never changes: clients may cache it; shared caches must revalidate.
        "Cache-Control": "public,max-age=86400,s-maxage=0,proxy-revalidate",
        "X-Robots-Tag": "noindex, nofollow, noarchive, noimageindex",
    }


def _is_token(name: str) -> bool:
    return all(32 < ord(c) < 127 and c not in _SEPARATORS for c in name)
