"""A small declarative router: path pattern, methods, auth requirement, handler.

Patterns are literal paths with ``{name}`` placeholders, each matching one path
segment (percent-decoded before the handler sees it), or ``{name:path}`` matching the
rest of the path. Every API area registers its routes on a ``Router``; the HTTP layer
asks it to match a request.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from rest.errors import MatrixError, unrecognized

if TYPE_CHECKING:
    from rest.request import FileResponse, HttpRequest, Response

Handler = Callable[["HttpRequest"], Awaitable["Response | FileResponse | dict[str, Any]"]]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(path))?\}")

# Releases under which each client endpoint is served: v3, and r0 for older clients (Hydrogen).
CLIENT_RELEASES = ("v3", "r0")


class Auth(enum.Enum):
    NONE = "none"  # no credentials looked at
    OPTIONAL = "optional"  # an access token is used if given (e.g. guest-readable endpoints)
    USER = "user"  # a valid access token is required
    FEDERATION = "federation"  # an X-Matrix signed request from another server


@dataclass(frozen=True)
class Route:
    pattern: str
    methods: frozenset[str]
    handler: Handler
    auth: Auth
    # The rc_* limiter applied per requester (or per client IP when unauthenticated).
    ratelimit: str | None = None
    # The handler reads the body itself from HttpRequest.body_file (uploads): the HTTP
    # layer does not read it into memory.
    raw_body: bool = False
    regex: re.Pattern[str] = field(compare=False, repr=False, default=re.compile(""))
    literal_prefix: str = field(compare=False, repr=False, default="")


@dataclass(frozen=True)
class Match:
    route: Route
    path_params: dict[str, str]


class Router:
    def __init__(self) -> None:
        self._routes: list[Route] = []

    @property
    def routes(self) -> Sequence[Route]:
        return tuple(self._routes)

    def add(
        self,
        methods: str | Iterable[str],
        patterns: str | Iterable[str],
        handler: Handler,
        *,
        auth: Auth = Auth.NONE,
        ratelimit: str | None = None,
        raw_body: bool = False,
    ) -> None:
        method_set = frozenset([methods] if isinstance(methods, str) else methods)
        if not method_set or not method_set <= {"GET", "POST", "PUT", "DELETE", "PATCH"}:
            raise ValueError(f"bad methods {sorted(method_set)!r}")
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            regex, prefix = _compile(pattern)
            for existing in self._routes:
                if existing.pattern == pattern and existing.methods & method_set:
                    raise ValueError(f"route {sorted(method_set)} {pattern} registered twice")
            self._routes.append(
                Route(
                    pattern=pattern,
                    methods=method_set,
                    handler=handler,
                    auth=auth,
                    ratelimit=ratelimit,
                    raw_body=raw_body,
                    regex=regex,
                    literal_prefix=prefix,
                )
            )

    def include(self, other: Router) -> None:
        for route in other._routes:
            self._routes.append(route)

    def match(self, method: str, path: str) -> Match:
        """The route for this method and (still percent-encoded) path.

        Raises M_UNRECOGNIZED: 404 when no route has the path, 405 when routes have the
        path but not the method, as the spec says for unknown endpoints.
        """
        if method == "HEAD":
            method = "GET"
        path_known = False
        for route in self._routes:
            if not path.startswith(route.literal_prefix):
                continue
            found = route.regex.match(path)
            if found is None:
                continue
            if method not in route.methods:
                path_known = True
                continue
            return Match(route, _decode_params(found.groupdict()))
        if path_known:
            raise unrecognized("Unrecognized request: method not allowed", status=405)
        raise unrecognized()


def client_patterns(path: str, releases: Sequence[str] = CLIENT_RELEASES) -> list[str]:
    """The client API paths for ``path`` under each release prefix."""
    return [f"/_matrix/client/{release}{path}" for release in releases]


def _compile(pattern: str) -> tuple[re.Pattern[str], str]:
    if not pattern.startswith("/"):
        raise ValueError(f"pattern {pattern!r} must start with /")
    parts = []
    position = 0
    prefix_end = None
    for placeholder in _PLACEHOLDER.finditer(pattern):
        if prefix_end is None:
            prefix_end = placeholder.start()
        parts.append(re.escape(pattern[position : placeholder.start()]))
        name, kind = placeholder.group(1), placeholder.group(2)
        parts.append(f"(?P<{name}>.+)" if kind == "path" else f"(?P<{name}>[^/]+)")
        position = placeholder.end()
    parts.append(re.escape(pattern[position:]))
    prefix = pattern if prefix_end is None else pattern[:prefix_end]
    return re.compile("".join(parts) + "/?$" if pattern != "/" else "/$"), prefix


def _decode_params(raw: dict[str, str]) -> dict[str, str]:
    params = {}
    for name, value in raw.items():
        try:
            params[name] = unquote(value, errors="strict")
        except UnicodeDecodeError:
            raise MatrixError(
                400, "M_UNRECOGNIZED", f"Path parameter {name} is not valid UTF-8"
            ) from None
    return params
