"""Open Graph metadata from an HTML page, for URL previews (pure: no I/O).

Reads ``og:``, ``article:`` and ``profile:`` meta tags, falls back on Twitter card tags,
the page title (or first heading), the description meta tag and an image on the page,
as Synapse's previewer does. The standard library's tolerant HTML parser reads the page.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin

# Synapse's limits: longer tags or values are dropped from the preview.
TAG_NAME_MAXLEN = 50
TAG_VALUE_MAXLEN = 1000
_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-:.]+)""", re.I)
_TWITTER_TO_OG = {"twitter:image:src": "og:image"}


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.twitter: dict[str, str] = {}
        self.description: str | None = None
        self.itemprop_image: str | None = None
        self.images: list[tuple[int, str]] = []  # (area, src) of <img> with a size
        self.first_image: str | None = None
        self.title: str | None = None
        self.heading: str | None = None
        self._text_of: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name.lower(): (value or "") for name, value in attrs}
        if tag == "meta":
            content = attributes.get("content", "").strip()
            if not content:
                return
            prop = attributes.get("property", "").strip()
            name = attributes.get("name", "").strip()
            if prop.split(":", 1)[0] in ("og", "article", "profile"):
                self.og.setdefault(prop, content)
            if name.startswith("twitter:"):
                key = _TWITTER_TO_OG.get(name, "og:" + name[len("twitter:") :])
                self.twitter.setdefault(key, content)
            if name.lower() == "description" and self.description is None:
                self.description = content
            if "image" in attributes.get("itemprop", "").lower() and self.itemprop_image is None:
                self.itemprop_image = content
        elif tag == "img":
            src = attributes.get("src", "").strip()
            if not src:
                return
            if self.first_image is None:
                self.first_image = src
            try:
                area = int(attributes.get("width", "")) * int(attributes.get("height", ""))
            except ValueError:
                return
            if area > 100:  # skip tracking pixels and icons (Synapse: over 10x10)
                self.images.append((area, src))
        elif tag in ("title", "h1", "h2", "h3") and self._text_of is None:
            self._text_of, self._text = tag, []

    def handle_data(self, data: str) -> None:
        if self._text_of is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag != self._text_of:
            return
        text = " ".join("".join(self._text).split())
        if text:
            if tag == "title" and self.title is None:
                self.title = text
            elif tag != "title" and self.heading is None:
                self.heading = text
        self._text_of = None


def decode_html(body: bytes, content_type: str | None) -> str:
    """The page as text: the charset from the header, else from a meta tag, else UTF-8."""
    charset = None
    if content_type:
        match = re.search(r"charset\s*=\s*\"?([A-Za-z0-9_\-:.]+)", content_type, re.I)
        if match:
            charset = match.group(1)
    if charset is None:
        sniffed = _CHARSET_RE.search(body[:4096])
        if sniffed:
            charset = sniffed.group(1).decode("ascii")
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def parse_open_graph(html: str, page_url: str) -> dict[str, str]:
    """The Open Graph preview of a page; image URLs made absolute against ``page_url``."""
    parser = _PageParser()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # the parser is tolerant, but a page can still defeat it; use what we have
        pass
    og = dict(parser.og)
    for key, value in parser.twitter.items():
        og.setdefault(key, value)
    if "og:title" not in og:
        title = parser.title or parser.heading
        if title:
            og["og:title"] = title
    if "og:description" not in og and parser.description:
        og["og:description"] = parser.description
    if "og:image" not in og:
        if parser.itemprop_image:
            og["og:image"] = parser.itemprop_image
        elif parser.images:
            og["og:image"] = max(parser.images, key=lambda image: image[0])[1]
        elif parser.first_image:
            og["og:image"] = parser.first_image
    if "og:image" in og:
        og["og:image"] = urljoin(page_url, og["og:image"])
    return {
        key: value
        for key, value in og.items()
        if len(key) <= TAG_NAME_MAXLEN and len(value) <= TAG_VALUE_MAXLEN
    }
