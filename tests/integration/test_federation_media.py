"""Media across two Hearth servers over real TLS: a user of one downloads (and gets
thumbnails of) media uploaded on the other through the authenticated client API, fetched
over the federation media endpoints and cached; those endpoints served as multipart."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from federation.client import FederationResponse
from federation.media import boundary_of, parse_multipart
from tests.integration import federation_helpers
from tests.integration.federation_helpers import FederatedServer, Federation
from tests.integration.harness import HttpResult
from tests.integration.media_helpers import CLIENT_MEDIA, MEDIA, image_bytes, size_of

db_configs = federation_helpers.db_configs
federation = federation_helpers.federation


def _upload(server: FederatedServer, token: str, data: bytes, content_type: str, name: str) -> str:
    result = server.request(
        "POST",
        f"{MEDIA}/upload?filename={quote(name)}",
        access_token=token,
        body=data,
        headers={"Content-Type": content_type},
    )
    assert result.status == 200, result.body
    uri: str = result.json()["content_uri"]
    assert uri.startswith(f"mxc://{server.server_name}/")
    return uri[len(f"mxc://{server.server_name}/") :]


def _signed_get(
    origin: FederatedServer, destination: FederatedServer, path: str
) -> FederationResponse:
    response: FederationResponse = origin.run_sync(
        origin.homeserver.federation_client.request("GET", destination.server_name, path)
    )
    return response


def _thumbnail(
    server: FederatedServer, token: str, origin: str, media_id: str, query: str
) -> HttpResult:
    return server.request(
        "GET", f"{CLIENT_MEDIA}/thumbnail/{origin}/{media_id}?{query}", access_token=token
    )


def test_remote_download_is_fetched_once_and_byte_exact(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    alice = a.register_user("alice")
    bob = b.register_user("bob")
    data = image_bytes(300, 200, "PNG")
    media_id = _upload(a, alice.access_token, data, "image/png", "holiday.png")

    first = b.request(
        "GET", f"{CLIENT_MEDIA}/download/{a.server_name}/{media_id}", access_token=bob.access_token
    )

    assert first.status == 200, first.body
    assert first.body == data
    assert first.headers["content-type"] == "image/png"
    assert "filename=holiday.png" in first.headers["content-disposition"]
    cached = b.run_sync(b.homeserver.media.store.get_remote_media(a.server_name, media_id))
    assert cached is not None
    assert cached.media_length == len(data)
    assert cached.upload_name == "holiday.png"
    on_disk = b.homeserver.media.paths.remote_media(a.server_name, cached.filesystem_id)
    assert Path(on_disk).read_bytes() == data

    # Served from the cache from now on: the origin can go away.
    a.stop()
    federation.servers.remove(a)
    again = b.request(
        "GET", f"{CLIENT_MEDIA}/download/{a.server_name}/{media_id}", access_token=bob.access_token
    )
    assert again.status == 200
    assert again.body == data


def test_remote_thumbnails_match_the_origins(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    alice = a.register_user("alice")
    bob = b.register_user("bob")
    media_id = _upload(a, alice.access_token, image_bytes(640, 480, "JPEG"), "image/jpeg", "p.jpg")

    for query in ("width=32&height=32&method=crop", "width=320&height=240&method=scale"):
        remote = _thumbnail(b, bob.access_token, a.server_name, media_id, query)
        local = _thumbnail(a, alice.access_token, a.server_name, media_id, query)
        assert remote.status == 200, remote.body
        assert local.status == 200, local.body
        assert remote.headers["content-type"] == local.headers["content-type"]
        assert remote.body == local.body
    assert size_of(
        _thumbnail(
            b, bob.access_token, a.server_name, media_id, "width=32&height=32&method=crop"
        ).body
    ) == (32, 32)


def test_unknown_remote_media_is_not_found(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    bob = b.register_user("bob")

    result = b.request(
        "GET", f"{CLIENT_MEDIA}/download/{a.server_name}/NoSuchMedia", access_token=bob.access_token
    )

    assert result.status == 404
    assert result.json()["errcode"] == "M_NOT_FOUND"
    assert (
        b.run_sync(b.homeserver.media.store.get_remote_media(a.server_name, "NoSuchMedia")) is None
    )


def test_remote_media_over_max_upload_size_is_refused_and_not_kept(
    federation: Federation,
) -> None:
    a = federation.start("a")
    b = federation.start("b", max_upload_size="10K")
    alice = a.register_user("alice")
    bob = b.register_user("bob")
    media_id = _upload(a, alice.access_token, b"x" * 20_000, "application/octet-stream", "big")

    result = b.request(
        "GET", f"{CLIENT_MEDIA}/download/{a.server_name}/{media_id}", access_token=bob.access_token
    )

    assert result.status == 502
    assert result.json()["errcode"] == "M_TOO_LARGE"
    assert b.run_sync(b.homeserver.media.store.get_remote_media(a.server_name, media_id)) is None


def test_unreachable_origin_is_a_502(federation: Federation) -> None:
    b = federation.start("b")
    bob = b.register_user("bob")
    gone = f"127.0.0.1:{federation_helpers.free_port()}"

    result = b.request(
        "GET", f"{CLIENT_MEDIA}/download/{gone}/SomeMedia", access_token=bob.access_token
    )

    assert result.status == 502
    assert result.json()["errcode"] == "M_UNKNOWN"


def test_federation_download_is_multipart(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    alice = a.register_user("alice")
    data = bytes(range(256)) * 40 + b"\r\n--not-a-boundary\r\n"
    media_id = _upload(a, alice.access_token, data, "application/octet-stream", "blob.bin")

    response = _signed_get(b, a, f"/_matrix/federation/v1/media/download/{media_id}")

    boundary = boundary_of(response.headers["content-type"])
    parts = parse_multipart(response.body, boundary)
    assert len(parts) == 2
    assert parts[0].headers["content-type"] == "application/json"
    assert parts[0].content == b"{}"
    assert parts[1].headers["content-type"] == "application/octet-stream"
    assert "filename=blob.bin" in parts[1].headers["content-disposition"]
    assert parts[1].content == data


def test_federation_thumbnail_is_multipart(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    alice = a.register_user("alice")
    media_id = _upload(a, alice.access_token, image_bytes(200, 100, "PNG"), "image/png", "i.png")

    response = _signed_get(
        b, a, f"/_matrix/federation/v1/media/thumbnail/{media_id}?width=50&height=50&method=crop"
    )

    parts = parse_multipart(response.body, boundary_of(response.headers["content-type"]))
    assert parts[0].content == b"{}"
    assert parts[1].headers["content-type"] == "image/png"
    local = _thumbnail(
        a, alice.access_token, a.server_name, media_id, "width=50&height=50&method=crop"
    )
    assert parts[1].content == local.body


def test_federation_media_needs_a_signed_request(federation: Federation) -> None:
    a = federation.start("a")
    alice = a.register_user("alice")
    media_id = _upload(a, alice.access_token, b"hello", "text/plain", "h.txt")

    for path in (
        f"/_matrix/federation/v1/media/download/{media_id}",
        f"/_matrix/federation/v1/media/thumbnail/{media_id}?width=1&height=1",
    ):
        result = a.https("GET", path)
        assert result.status == 401
        assert result.json()["errcode"] == "M_UNAUTHORIZED"


def test_federation_media_unknown_id_is_not_found(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    from federation.client import HttpResponseError

    try:
        _signed_get(b, a, "/_matrix/federation/v1/media/download/Unknown")
    except HttpResponseError as e:
        assert e.status == 404
        assert e.errcode == "M_NOT_FOUND"
    else:
        raise AssertionError("expected a 404")
