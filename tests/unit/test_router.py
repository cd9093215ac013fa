"""The declarative router: matching, 404 versus 405, parameter decoding."""

from __future__ import annotations

from typing import Any

import pytest

from rest.errors import MatrixError, limit_exceeded
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


async def handler(request: HttpRequest) -> dict[str, Any]:
    return {}


async def other(request: HttpRequest) -> dict[str, Any]:
    return {"other": True}


def make_router() -> Router:
    router = Router()
    router.add("GET", "/_matrix/client/versions", handler)
    router.add(
        ["PUT"], client_patterns("/rooms/{roomId}/send/{eventType}/{txnId}"), other, auth=Auth.USER
    )
    router.add("GET", "/_matrix/media/v3/download/{serverName}/{mediaId}/{fileName:path}", handler)
    router.add("GET", "/_matrix/media/v3/download/{serverName}/{mediaId}", other)
    return router


def test_literal_and_placeholder_routes_match() -> None:
    router = make_router()
    assert router.match("GET", "/_matrix/client/versions").route.handler is handler
    found = router.match(
        "PUT", "/_matrix/client/r0/rooms/%21abc%3Aexample.org/send/m.room.message/t1"
    )
    assert found.route.auth is Auth.USER
    assert found.path_params == {
        "roomId": "!abc:example.org",
        "eventType": "m.room.message",
        "txnId": "t1",
    }
    assert router.match("PUT", "/_matrix/client/v3/rooms/!a:b/send/m.text/1").route.handler is other


def test_head_is_served_by_get_routes() -> None:
    assert make_router().match("HEAD", "/_matrix/client/versions").route.handler is handler


def test_path_placeholder_takes_the_rest() -> None:
    router = make_router()
    found = router.match("GET", "/_matrix/media/v3/download/hs/abc/dir%2Fname/x.png")
    assert found.path_params["fileName"] == "dir/name/x.png"
    assert router.match("GET", "/_matrix/media/v3/download/hs/abc").route.handler is other


def test_unknown_path_is_404_unrecognized() -> None:
    with pytest.raises(MatrixError) as caught:
        make_router().match("GET", "/_matrix/client/v3/nope")
    assert (caught.value.status, caught.value.errcode) == (404, "M_UNRECOGNIZED")


def test_known_path_with_wrong_method_is_405_unrecognized() -> None:
    with pytest.raises(MatrixError) as caught:
        make_router().match("POST", "/_matrix/client/versions")
    assert (caught.value.status, caught.value.errcode) == (405, "M_UNRECOGNIZED")


def test_placeholder_does_not_cross_segments() -> None:
    with pytest.raises(MatrixError) as caught:
        make_router().match("PUT", "/_matrix/client/v3/rooms/a/b/send/t/1")
    assert caught.value.status == 404


def test_invalid_utf8_in_parameter_is_400() -> None:
    with pytest.raises(MatrixError) as caught:
        make_router().match("PUT", "/_matrix/client/v3/rooms/%ff/send/t/1")
    assert caught.value.status == 400


def test_duplicate_registration_is_refused() -> None:
    router = make_router()
    with pytest.raises(ValueError, match="registered twice"):
        router.add("GET", "/_matrix/client/versions", other)
    with pytest.raises(ValueError, match="bad methods"):
        router.add("FETCH", "/x", other)


def test_limit_exceeded_error_carries_retry_after() -> None:
    error = limit_exceeded(1500)
    assert error.status == 429
    assert error.to_json() == {
        "errcode": "M_LIMIT_EXCEEDED",
        "error": "Too many requests",
        "retry_after_ms": 1500,
    }
    assert error.headers["Retry-After"] == "2"
