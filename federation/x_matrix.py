"""The ``Authorization: X-Matrix ...`` header of server-server requests (spec: "Request
Authentication"): the JSON object that is signed, and the header's syntax both ways.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from signedjson.sign import sign_json
from signedjson.types import SigningKey

from homeserver.events.validation import is_valid_server_name


class XMatrixParseError(ValueError):
    """The header is not a usable X-Matrix authorization."""


@dataclass(frozen=True, slots=True)
class XMatrixAuth:
    origin: str
    key: str  # key ID, e.g. "ed25519:a_bcde"
    sig: str  # unpadded base64
    # Absent in requests from servers older than spec v1.3.
    destination: str | None


def request_json(
    method: str, uri: str, origin: str, destination: str, content: Any | None = None
) -> dict[str, Any]:
    """The object whose signature goes in the header.

    ``content`` is left out for requests without a body (None), as the spec's example does;
    an empty JSON object is still content.
    """
    signed: dict[str, Any] = {
        "method": method,
        "uri": uri,
        "origin": origin,
        "destination": destination,
    }
    if content is not None:
        signed["content"] = content
    return signed


def sign_request(
    signing_key: SigningKey,
    origin: str,
    destination: str,
    method: str,
    uri: str,
    content: Any | None = None,
) -> str:
    """The ``Authorization`` header value for a request from ``origin`` to ``destination``."""
    signed = sign_json(request_json(method, uri, origin, destination, content), origin, signing_key)
    [(key_id, signature)] = signed["signatures"][origin].items()
    return format_header(XMatrixAuth(origin, key_id, signature, destination))


def _quote(value: str) -> str:
    # The spec asks senders to avoid backslashes; escape anyway so any value round-trips.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_header(auth: XMatrixAuth) -> str:
    """The header value in the form older servers understand: one space after the scheme,
    lower-case names, quoted values, no spaces around the commas."""
    params = [("origin", auth.origin)]
    if auth.destination is not None:
        params.append(("destination", auth.destination))
    params += [("key", auth.key), ("sig", auth.sig)]
    return "X-Matrix " + ",".join(f"{name}={_quote(value)}" for name, value in params)


# RFC 9110 token characters; names must be tokens.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME = re.compile(r"X-Matrix[ ]+", re.IGNORECASE)
_PARAM = re.compile(
    rf"""[ \t]*(?P<name>{_TOKEN})[ \t]*=[ \t]*
    (?:"(?P<quoted>(?:[^"\\]|\\.)*)"   # quoted-string, backslash escapes
      |(?P<bare>[^\s,"]*)            # token; colons allowed for older senders
    )[ \t]*""",
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def parse_params(header: str) -> dict[str, str]:
    """The parameters of an X-Matrix header, names lower-cased, quoted values unescaped.

    Raises XMatrixParseError when the scheme is not X-Matrix or the list does not parse.
    """
    scheme = _SCHEME.match(header)
    if scheme is None:
        raise XMatrixParseError("not an X-Matrix authorization")
    params: dict[str, str] = {}
    position = scheme.end()
    while True:
        found = _PARAM.match(header, position)
        if found is None:
            raise XMatrixParseError(f"cannot parse parameters at {header[position:][:30]!r}")
        quoted = found.group("quoted")
        value = _ESCAPE.sub(r"\1", quoted) if quoted is not None else found.group("bare")
        # The first occurrence wins: a repeated name is not a way to smuggle a second value.
        params.setdefault(found.group("name").lower(), value)
        position = found.end()
        if position == len(header):
            return params
        if header[position] != ",":
            raise XMatrixParseError(f"expected ',' at {header[position:][:30]!r}")
        position += 1


def parse_header(header: str) -> XMatrixAuth:
    """An X-Matrix header's origin, key, signature and (optional) destination."""
    params = parse_params(header)
    missing = [name for name in ("origin", "key", "sig") if not params.get(name)]
    if missing:
        raise XMatrixParseError(f"missing {', '.join(missing)}")
    origin = params["origin"]
    if not is_valid_server_name(origin):
        raise XMatrixParseError(f"origin {origin!r} is not a server name")
    return XMatrixAuth(
        origin=origin, key=params["key"], sig=params["sig"], destination=params.get("destination")
    )


def signed_request_json(
    auth: XMatrixAuth,
    method: str,
    uri: str,
    destination: str,
    content: Any | None,
) -> dict[str, Any]:
    """The signed object a received request claims, ready for signature verification."""
    signed = request_json(method, uri, auth.origin, destination, content)
    signatures: Mapping[str, Mapping[str, str]] = {auth.origin: {auth.key: auth.sig}}
    signed["signatures"] = signatures
    return signed
