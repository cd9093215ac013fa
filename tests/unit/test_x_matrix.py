"""The X-Matrix Authorization header: parsing, formatting and the signed request object,
against the spec's text and Synapse's own parser."""

from __future__ import annotations

import pytest
from signedjson.key import generate_signing_key, get_verify_key
from signedjson.sign import verify_signed_json
from synapse.federation.transport.server._base import _parse_auth_header

from federation.x_matrix import (
    XMatrixAuth,
    XMatrixParseError,
    format_header,
    parse_header,
    parse_params,
    request_json,
    sign_request,
    signed_request_json,
)


def test_spec_example_parses() -> None:
    header = (
        'X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",'
        'key="ed25519:key1",sig="ABCDEF..."'
    )
    assert parse_header(header) == XMatrixAuth(
        origin="origin.hs.example.com",
        key="ed25519:key1",
        sig="ABCDEF...",
        destination="destination.hs.example.com",
    )


@pytest.mark.parametrize(
    "header",
    [
        # Spaces and tabs around commas, several spaces after the scheme, any name case,
        # any order, unquoted tokens (with colons, for older senders), escapes, unknown names.
        'X-Matrix   origin=origin.example ,\tKey="ed25519:k" , sig="c2ln",destination=dest.example',
        'X-Matrix sig="c2ln",ORIGIN="origin.example",key=ed25519:k,destination="dest.example"',
        'X-Matrix origin="orig\\in.example",key="ed25519:k",sig="c2ln",destination="dest.example"',
        'X-Matrix origin="origin.example",extra="a, b",key="ed25519:k",sig="c2ln",'
        'destination="dest.example"',
    ],
)
def test_liberal_parsing(header: str) -> None:
    auth = parse_header(header)
    assert auth.origin == "origin.example"
    assert auth.key == "ed25519:k"
    assert auth.sig == "c2ln"
    assert auth.destination == "dest.example"


def test_destination_is_optional() -> None:
    auth = parse_header('X-Matrix origin="o.example",key="ed25519:k",sig="s"')
    assert auth.destination is None


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        'X-Matrix origin="o.example",key="ed25519:k"',  # no sig
        'X-Matrix key="ed25519:k",sig="s"',  # no origin
        'X-Matrix origin="not a server name!",key="ed25519:k",sig="s"',
        'X-Matrix origin="o.example" key="ed25519:k",sig="s"',  # missing comma
        'X-Matrix origin="o.example,key="ed25519:k",sig="s"',  # unterminated quote
        "X-Matrix",
    ],
)
def test_bad_headers(header: str) -> None:
    with pytest.raises(XMatrixParseError):
        parse_header(header)


def test_format_is_what_older_servers_expect() -> None:
    header = format_header(XMatrixAuth("o.example:8448", "ed25519:k", "c2ln", "d.example"))
    assert header == (
        'X-Matrix origin="o.example:8448",destination="d.example",key="ed25519:k",sig="c2ln"'
    )
    # Backslashes and quotes survive a round trip.
    odd = XMatrixAuth("o.example", 'ed25519:a"b\\c', "s", None)
    assert parse_params(format_header(odd))["key"] == 'ed25519:a"b\\c'


def test_synapse_parses_our_headers() -> None:
    key = generate_signing_key("a1")
    header = sign_request(key, "o.example", "d.example:8448", "PUT", "/_matrix/x?y=1", {"a": 1})
    origin, key_id, sig, destination = _parse_auth_header(header.encode())
    assert (origin, key_id, destination) == ("o.example", "ed25519:a1", "d.example:8448")
    assert parse_header(header).sig == sig


def test_signature_covers_the_spec_object() -> None:
    key = generate_signing_key("a1")
    header = sign_request(key, "o.example", "d.example", "POST", "/target", {"k": "v"})
    auth = parse_header(header)
    signed = signed_request_json(auth, "POST", "/target", "d.example", {"k": "v"})
    assert {k: v for k, v in signed.items() if k != "signatures"} == {
        "method": "POST",
        "uri": "/target",
        "origin": "o.example",
        "destination": "d.example",
        "content": {"k": "v"},
    }
    verify_signed_json(signed, "o.example", get_verify_key(key))


def test_no_content_key_without_a_body() -> None:
    assert "content" not in request_json("GET", "/x", "o.example", "d.example")
    assert request_json("PUT", "/x", "o.example", "d.example", {})["content"] == {}
