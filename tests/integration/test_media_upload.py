"""Uploads and downloads over real HTTP, on both engines: bytes, headers, limits, bad input."""

from __future__ import annotations

import http.client
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import RunningHomeserver, make_config, start_homeserver
from tests.integration.media_helpers import (
    CLIENT_MEDIA,
    MEDIA,
    download,
    image_bytes,
    store_files,
    upload,
    upload_ok,
)


@pytest.fixture
def start(tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any) -> Iterator[Any]:
    started: list[RunningHomeserver] = []

    def start_with(**extra: Any) -> RunningHomeserver:
        config = make_config(tmp_path, db_config, **extra)
        running = start_homeserver(config, reactor_thread, run_sync)
        started.append(running)
        return running

    yield start_with
    for running in started:
        running.stop()


def _rows(hs: RunningHomeserver, sql: str) -> list[tuple[Any, ...]]:
    database = hs.homeserver.database
    assert database is not None
    rows: list[tuple[Any, ...]] = hs.run_sync(database.execute("test", sql))
    return rows


def test_upload_then_download_is_byte_exact(start: Any, tmp_path: Path) -> None:
    hs = start()
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    data = os.urandom(3 * 1024 * 1024 + 17)  # over Twisted's in-memory threshold
    media = upload_ok(hs, alice.access_token, data, "application/octet-stream", filename="data.bin")

    result = download(hs, bob.access_token, media)
    assert result.status == 200
    assert result.body == data
    assert result.headers["content-type"] == "application/octet-stream"
    assert result.headers["content-length"] == str(len(data))
    assert result.headers["content-disposition"] == "attachment; filename=data.bin"
    assert result.headers["content-security-policy"] == (
        "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf;"
        " style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
    )
    assert result.headers["cross-origin-resource-policy"] == "cross-origin"
    assert result.headers["x-content-type-options"] == "nosniff"
    assert result.headers["access-control-allow-origin"] == "*"

    # The file is in Synapse's sharded layout, and nothing is left in the scratch folder.
    media_id = media.split("/")[1]
    stored = (
        tmp_path / "media_store" / "local_content" / media_id[:2] / media_id[2:4] / media_id[4:]
    )
    assert stored.read_bytes() == data
    assert list((tmp_path / "media_store" / "tmp").iterdir()) == []

    # A file name in the path names the download.
    named = download(hs, bob.access_token, media, "/r%C3%A9sum%C3%A9%20final.pdf")
    assert named.body == data
    assert named.headers["content-disposition"] == (
        "attachment; filename*=utf-8''r%C3%A9sum%C3%A9%20final.pdf"
    )


def test_disposition_inline_only_for_safe_types(start: Any) -> None:
    hs = start()
    alice = hs.register_user("alice")
    token = alice.access_token
    png = upload_ok(hs, token, image_bytes(4, 4), "image/png")
    assert download(hs, token, png).headers["content-disposition"] == "inline"
    html = upload_ok(hs, token, b"<script>alert(1)</script>", "text/html", filename="x.html")
    result = download(hs, token, html)
    assert result.headers["content-disposition"] == "attachment; filename=x.html"
    assert result.headers["content-type"] == "text/html; charset=UTF-8"
    svg = upload_ok(hs, token, b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")
    assert download(hs, token, svg).headers["content-disposition"] == "attachment"
    # No Content-Type at upload: served as application/octet-stream.
    untyped = upload_ok(hs, token, b"abc", None)  # type: ignore[arg-type]
    assert download(hs, token, untyped).headers["content-type"] == "application/octet-stream"


def test_media_config_and_authentication(start: Any) -> None:
    hs = start(max_upload_size="2M")
    alice = hs.register_user("alice")
    for path in (f"{CLIENT_MEDIA}/config", f"{MEDIA}/config", "/_matrix/media/r0/config"):
        result = hs.request("GET", path, access_token=alice.access_token)
        assert (result.status, result.json()) == (200, {"m.upload.size": 2 * 1024 * 1024})
    media = upload_ok(hs, alice.access_token, b"hello", "text/plain")
    missing = (
        download(hs, None, media).status,
        hs.request("GET", f"{CLIENT_MEDIA}/download/{media}").json()["errcode"],
    )
    assert missing == (404, "M_MISSING_TOKEN")
    assert upload(hs, "not-a-token", b"x").json()["errcode"] == "M_UNKNOWN_TOKEN"


def test_legacy_endpoints_refuse_media_created_behind_authentication(start: Any) -> None:
    hs = start()
    alice = hs.register_user("alice")
    media = upload_ok(hs, alice.access_token, image_bytes(64, 64), "image/png")
    for path in (
        f"{MEDIA}/download/{media}",
        f"/_matrix/media/r0/download/{media}/name.png",
        f"{MEDIA}/thumbnail/{media}?width=32&height=32",
    ):
        result = hs.request("GET", path)
        assert (result.status, result.json()["errcode"]) == (404, "M_NOT_FOUND"), path
    assert download(hs, alice.access_token, media).status == 200


def test_legacy_endpoints_serve_media_when_authenticated_media_is_off(start: Any) -> None:
    hs = start(enable_authenticated_media=False)
    alice = hs.register_user("alice")
    data = image_bytes(64, 64)
    media = upload_ok(hs, alice.access_token, data, "image/png")
    result = hs.request("GET", f"{MEDIA}/download/{media}")
    assert (result.status, result.body) == (200, data)
    thumb = hs.request("GET", f"/_matrix/media/r0/thumbnail/{media}?width=32&height=32&method=crop")
    assert thumb.status == 200 and thumb.headers["content-type"] == "image/png"
    assert download(hs, alice.access_token, media).body == data


def test_upload_over_max_upload_size(start: Any, tmp_path: Path) -> None:
    hs = start(max_upload_size=1000)
    alice = hs.register_user("alice")
    result = upload(hs, alice.access_token, b"x" * 1001)
    assert (result.status, result.json()["errcode"]) == (413, "M_TOO_LARGE")
    assert upload(hs, alice.access_token, b"x" * 1000).status == 200

    # Chunked, so the size is only known while reading: still refused, nothing kept.
    connection = http.client.HTTPConnection("127.0.0.1", hs.port, timeout=30)
    connection.request(
        "POST",
        f"{MEDIA}/upload",
        body=iter([b"y" * 600, b"y" * 600]),
        headers={"Authorization": f"Bearer {alice.access_token}"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    assert response.status == 413
    connection.close()
    assert len(store_files(tmp_path / "media_store")) == 1
    assert _rows(hs, "SELECT COUNT(*) FROM local_media")[0][0] == 1


def test_bad_input_gets_clear_errors_and_stores_nothing(start: Any, tmp_path: Path) -> None:
    hs = start()
    alice = hs.register_user("alice")
    token = alice.access_token

    def error(result: Any) -> tuple[int, str]:
        return result.status, result.json()["errcode"]

    assert error(upload(hs, token, b"x", "not a media type")) == (400, "M_INVALID_PARAM")
    assert error(upload(hs, token, b"x", "text/plain\x7f")) == (400, "M_INVALID_PARAM")
    assert error(upload(hs, token, b"x", "text/plain", filename="a\x01b")) == (
        400,
        "M_INVALID_PARAM",
    )
    bad_utf8 = hs.request("POST", f"{MEDIA}/upload?filename=%FF", access_token=token, body=b"x")
    assert error(bad_utf8) == (400, "M_INVALID_PARAM")
    assert store_files(tmp_path / "media_store") == []
    assert _rows(hs, "SELECT COUNT(*) FROM local_media")[0][0] == 0

    media = upload_ok(hs, token, b"secret", "text/plain")
    media_id = media.split("/")[1]
    for path, expected in (
        # path traversal, encoded so the router sees one segment
        ("hs.test/..%2F..%2F..%2Fetc%2Fpasswd", (400, "M_INVALID_PARAM")),
        ("hs.test/%2E%2E", (400, "M_INVALID_PARAM")),
        ("hs.test/abc", (400, "M_INVALID_PARAM")),
        ("bad%2Fserver!/" + media_id, (400, "M_INVALID_PARAM")),
        # another server's media is fetched over federation: an unreachable one is a 502
        ("other.test/" + media_id, (502, "M_UNKNOWN")),
        ("hs.test/" + "A" * 24, (404, "M_NOT_FOUND")),
    ):
        assert error(download(hs, token, path)) == expected, path
        thumb = hs.request(
            "GET", f"{CLIENT_MEDIA}/thumbnail/{path}?width=32&height=32", access_token=token
        )
        assert error(thumb) == expected, path

    # A file gone from disk: a clear 404, not a 500.
    stored = (
        tmp_path / "media_store" / "local_content" / media_id[:2] / media_id[2:4] / media_id[4:]
    )
    stored.unlink()
    assert error(download(hs, token, media)) == (404, "M_NOT_FOUND")


def test_truncated_upload_leaves_nothing(start: Any, tmp_path: Path) -> None:
    hs = start()
    alice = hs.register_user("alice")
    with socket.create_connection(("127.0.0.1", hs.port), timeout=10) as sock:
        sock.sendall(
            (
                f"POST {MEDIA}/upload HTTP/1.1\r\nHost: hs.test\r\n"
                f"Authorization: Bearer {alice.access_token}\r\n"
                "Content-Type: application/octet-stream\r\nContent-Length: 200000\r\n\r\n"
            ).encode()
            + b"z" * 150_000
        )
    time.sleep(0.5)
    # The server is fine and has kept nothing of the cut-off upload.
    assert upload(hs, alice.access_token, b"after").status == 200
    assert _rows(hs, "SELECT media_length FROM local_media") == [(5,)]
    files = store_files(tmp_path / "media_store")
    assert [f.read_bytes() for f in files] == [b"after"]
    assert list((tmp_path / "media_store" / "tmp").iterdir()) == []


def test_media_upload_limits(start: Any, tmp_path: Path) -> None:
    hs = start(
        media_upload_limits=[
            {"time_period": "1h", "max_size": 1000},
            {"time_period": "1d", "max_size": 5000, "info_uri": "https://hs.test/quota"},
        ]
    )
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    assert upload(hs, alice.access_token, b"a" * 600).status == 200
    refused = upload(hs, alice.access_token, b"a" * 600)
    assert refused.status == 403
    body = refused.json()
    assert body["errcode"] == "M_USER_LIMIT_EXCEEDED"
    assert body["info_uri"].startswith("https://")
    # Per user: bob has his own allowance.
    assert upload(hs, bob.access_token, b"b" * 600).status == 200
    assert len(store_files(tmp_path / "media_store")) == 2
