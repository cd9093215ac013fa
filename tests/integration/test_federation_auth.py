"""Inbound X-Matrix authentication between Hearth servers over real TLS: signed requests
reach the handler with their origin; unsigned, forged, tampered, misdirected and
non-whitelisted ones are refused before it runs. Outbound errors map to HttpResponseError."""

from __future__ import annotations

from typing import Any

import pytest
from signedjson.key import generate_signing_key

from federation.client import FederationDeniedError, HttpResponseError, federation_path
from federation.x_matrix import XMatrixAuth, format_header, sign_request
from tests.integration import federation_helpers
from tests.integration.federation_helpers import FederatedServer, Federation

db_configs = federation_helpers.db_configs
federation = federation_helpers.federation


def _echo_path(thing: str) -> str:
    return federation_path("/_matrix/federation/v1/hearth_test_echo/%s", thing)


def _signed_headers(
    origin: FederatedServer,
    destination: str,
    method: str,
    uri: str,
    content: Any = None,
    signing_key: Any = None,
) -> dict[str, str]:
    key = signing_key or origin.homeserver.server_keys.signing_key
    header = sign_request(key, origin.server_name, destination, method, uri, content)
    return {"Authorization": header, "Content-Type": "application/json"}


def test_signed_requests_reach_the_handler_with_their_origin(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    client = a.homeserver.federation_client

    # A path parameter and query arguments that need encoding: signed exactly as sent.
    thing = "@alice:example.org/ä b"
    result = a.run_sync(
        client.get_json(b.server_name, _echo_path(thing), args={"q": ["x y", "&="], "z": "1"})
    )
    assert result["origin"] == a.server_name
    assert result["thing"] == thing
    assert result["uri"].endswith("?q=x%20y&q=%26%3D&z=1")

    body = {"pdus": [], "nested": {"ü": [1, 2.5, None, True]}}
    result = a.run_sync(client.put_json(b.server_name, _echo_path("put"), data=body))
    assert result == {
        "origin": a.server_name,
        "thing": "put",
        "uri": _echo_path("put"),
        "host": b.server_name,
        "content": body,
    }
    result = a.run_sync(client.post_json(b.server_name, _echo_path("post")))
    assert result["content"] == {}


def test_unsigned_request_is_refused(federation: Federation) -> None:
    b = federation.start("b")
    result = b.https("GET", _echo_path("x"))
    assert result.status == 401
    assert result.json()["errcode"] == "M_UNAUTHORIZED"
    result = b.https("GET", _echo_path("x"), headers={"Authorization": "Bearer sometoken"})
    assert result.status == 401
    assert result.json()["errcode"] == "M_UNAUTHORIZED"


def test_malformed_header_is_refused(federation: Federation) -> None:
    b = federation.start("b")
    for header in ('X-Matrix origin="a.test",key="ed25519:x"', 'X-Matrix origin="a.test" key'):
        result = b.https("GET", _echo_path("x"), headers={"Authorization": header})
        assert result.status == 400, header
        assert result.json()["errcode"] == "M_UNAUTHORIZED"


def test_forged_signature_is_refused(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    uri = _echo_path("x")
    # Signed with a key of the same ID that is not A's.
    forged_key = generate_signing_key(a.homeserver.server_keys.signing_key.version)
    headers = _signed_headers(a, b.server_name, "GET", uri, signing_key=forged_key)
    result = b.https("GET", uri, headers=headers)
    assert result.status == 401
    assert result.json()["errcode"] == "M_UNAUTHORIZED"

    # A's real signature over another request is no good for this one.
    headers = _signed_headers(a, b.server_name, "GET", _echo_path("other"))
    assert b.https("GET", uri, headers=headers).status == 401
    # Nor over another method, or another body.
    headers = _signed_headers(a, b.server_name, "POST", uri, {"a": 1})
    assert b.https("PUT", uri, body={"a": 1}, headers=headers).status == 401
    assert b.https("POST", uri, body={"a": 2}, headers=headers).status == 401
    # The genuine article passes, through the same plain HTTPS client.
    result = b.https("POST", uri, body={"a": 1}, headers=headers)
    assert result.status == 200, result.body
    assert result.json()["origin"] == a.server_name


def test_key_of_unknown_id_is_refused(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    uri = _echo_path("x")
    headers = _signed_headers(a, b.server_name, "GET", uri, signing_key=generate_signing_key("zz"))
    result = b.https("GET", uri, headers=headers)
    assert result.status == 401
    assert result.json()["errcode"] == "M_UNAUTHORIZED"


def test_wrong_destination_is_refused(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    uri = _echo_path("x")
    headers = _signed_headers(a, "someone.else.example", "GET", uri)
    result = b.https("GET", uri, headers=headers)
    assert result.status == 401
    assert result.json()["errcode"] == "M_UNAUTHORIZED"


def test_header_without_destination_is_accepted(federation: Federation) -> None:
    """Servers older than spec v1.3 send no destination; the signature still covers ours."""
    a = federation.start("a")
    b = federation.start("b")
    uri = _echo_path("x")
    signed = _signed_headers(a, b.server_name, "GET", uri)["Authorization"]
    params = dict(part.split("=", 1) for part in signed[len("X-Matrix ") :].split(","))
    header = format_header(
        XMatrixAuth(
            origin=params["origin"].strip('"'),
            key=params["key"].strip('"'),
            sig=params["sig"].strip('"'),
            destination=None,
        )
    )
    result = b.https("GET", uri, headers={"Authorization": header})
    assert result.status == 200, result.body
    assert result.json()["origin"] == a.server_name


def test_unreachable_origin_is_refused(federation: Federation) -> None:
    b = federation.start("b")
    key = generate_signing_key("1")
    uri = _echo_path("x")
    header = sign_request(key, "127.0.0.1:1", b.server_name, "GET", uri)
    result = b.https("GET", uri, headers={"Authorization": header})
    assert result.status == 401
    assert result.json()["errcode"] == "M_UNAUTHORIZED"


def test_domain_whitelist_both_ways(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b", federation_domain_whitelist=["only.example"])
    uri = _echo_path("x")
    result = b.https("GET", uri, headers=_signed_headers(a, b.server_name, "GET", uri))
    assert result.status == 403
    assert result.json()["errcode"] == "M_FORBIDDEN"
    with pytest.raises(FederationDeniedError):
        b.run_sync(b.homeserver.federation_client.get_json(a.server_name, uri))


def test_error_responses_become_http_response_errors(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    client = a.homeserver.federation_client
    with pytest.raises(HttpResponseError) as caught:
        a.run_sync(client.get_json(b.server_name, "/_matrix/federation/v1/no_such_thing"))
    assert caught.value.status == 404
    assert caught.value.errcode == "M_UNRECOGNIZED"
    assert caught.value.destination == b.server_name
    with pytest.raises(HttpResponseError) as caught:
        a.run_sync(client.put_json(b.server_name, "/_matrix/federation/v1/version"))
    assert caught.value.status == 405
