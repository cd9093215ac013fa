"""What a handler sees of an HTTP request, and what it returns."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from rest.errors import bad_json, invalid_param, missing_param, not_json


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


@dataclass
class HttpRequest:
    method: str
    path: str  # percent-encoded, as received
    path_params: dict[str, str]
    query: Mapping[bytes, list[bytes]]
    headers: Mapping[str, str]  # lower-cased names; the last value of a repeated header
    body: bytes
    client_ip: str
    request_id: str
    is_secure: bool
    # Set by the HTTP layer for routes that authenticate: a Requester (user) or a server name.
    requester: Any = None
    # For routes registered with raw_body=True: the body as a file positioned at its start
    # (``body`` is then empty). Twisted keeps a large body in a temporary file, not memory.
    body_file: IO[bytes] | None = None
    # The request target exactly as received (path and query, still percent-encoded):
    # what an X-Matrix signature covers.
    uri: str = ""
    _json: Any = field(default=None, repr=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (M_NOT_JSON if it does not parse, M_BAD_JSON if no object)."""
        if self._json is None:
            try:
                value = json.loads(self.body.decode("utf-8"), parse_constant=_reject_constant)
            except (UnicodeDecodeError, ValueError):
                raise not_json() from None
            if not isinstance(value, dict):
                raise bad_json("Content must be a JSON object.")
            self._json = value
        return dict(self._json)

    def query_string(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name.encode("ascii"))
        if not values:
            return default
        try:
            return values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_param(f"Query parameter {name!r} is not valid UTF-8") from None

    def required_query_string(self, name: str) -> str:
        value = self.query_string(name)
        if value is None:
            raise missing_param(f"Missing query parameter {name!r}")
        return value

    def query_int(self, name: str, default: int | None = None) -> int | None:
        value = self.query_string(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise invalid_param(f"Query parameter {name!r} must be an integer") from None

    def query_bool(self, name: str, default: bool = False) -> bool:
        value = self.query_string(name)
        if value is None:
            return default
        if value in ("true", "false"):
            return value == "true"
        raise invalid_param(f"Query parameter {name!r} must be true or false")


@dataclass
class Response:
    """A response other than a plain 200 JSON object."""

    status: int = 200
    json_body: Any = None
    body: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status=status, json_body=body, headers=headers or {})


@dataclass
class FileResponse:
    """A 200 whose body is streamed from an open file, which the HTTP layer closes.

    ``headers`` should carry Content-Type; Content-Length is set from ``length``.
    """

    file: IO[bytes]
    length: int
    headers: dict[str, str] = field(default_factory=dict)
