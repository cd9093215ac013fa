"""Asynchronous uploads (POST /create then PUT) over real HTTP, on both engines."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import HttpResult, RunningHomeserver, make_config, start_homeserver
from tests.integration.media_helpers import CLIENT_MEDIA, MEDIA, download, store_files


@pytest.fixture
def hs(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    config = make_config(
        tmp_path,
        db_config,
        max_pending_media_uploads=3,
        rc_media_create={"per_second": 0.001, "burst_count": 4},
    )
    running = start_homeserver(config, reactor_thread, run_sync)
    yield running
    running.stop()


def create(hs: RunningHomeserver, token: str) -> HttpResult:
    return hs.request("POST", "/_matrix/media/v1/create", access_token=token, body=b"")


def put(hs: RunningHomeserver, token: str, media: str, data: bytes, **kw: Any) -> HttpResult:
    query = "?filename=" + kw["filename"] if "filename" in kw else ""
    return hs.request(
        "PUT",
        f"{MEDIA}/upload/{media}{query}",
        access_token=token,
        body=data,
        headers={"Content-Type": kw.get("content_type", "text/plain")},
    )


def test_create_then_upload(hs: RunningHomeserver, tmp_path: Path) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    created = create(hs, alice.access_token)
    assert created.status == 200
    body = created.json()
    assert body["content_uri"].startswith("mxc://hs.test/")
    now_ms = hs.homeserver.now_ms()
    assert now_ms < body["unused_expires_at"] <= now_ms + 24 * 3600 * 1000
    media = body["content_uri"][len("mxc://") :]

    # Not uploaded yet: the download waits up to timeout_ms, then says so.
    waiting = hs.request(
        "GET", f"{CLIENT_MEDIA}/download/{media}?timeout_ms=0", access_token=bob.access_token
    )
    assert (waiting.status, waiting.json()["errcode"]) == (504, "M_NOT_YET_UPLOADED")

    # Only the creator may upload; another server name is not ours.
    forbidden = put(hs, bob.access_token, media, b"hijack")
    assert (forbidden.status, forbidden.json()["errcode"]) == (403, "M_FORBIDDEN")
    other = put(hs, alice.access_token, "other.test/" + media.split("/")[1], b"x")
    assert (other.status, other.json()["errcode"]) == (404, "M_NOT_FOUND")
    unknown = put(hs, alice.access_token, "hs.test/" + "Q" * 24, b"x")
    assert (unknown.status, unknown.json()["errcode"]) == (404, "M_NOT_FOUND")

    # A download started before the upload is answered once the content arrives.
    results: list[HttpResult] = []
    waiter = threading.Thread(
        target=lambda: results.append(
            hs.request(
                "GET",
                f"{CLIENT_MEDIA}/download/{media}?timeout_ms=20000",
                access_token=bob.access_token,
            )
        )
    )
    waiter.start()
    uploaded = put(hs, alice.access_token, media, b"late content", filename="late.txt")
    assert (uploaded.status, uploaded.json()) == (200, {})
    waiter.join(30)
    assert results[0].status == 200
    assert results[0].body == b"late content"
    assert results[0].headers["content-disposition"] == "inline; filename=late.txt"

    again = put(hs, alice.access_token, media, b"overwrite")
    assert (again.status, again.json()["errcode"]) == (409, "M_CANNOT_OVERWRITE_MEDIA")
    assert download(hs, bob.access_token, media).body == b"late content"
    assert [f.read_bytes() for f in store_files(tmp_path / "media_store")] == [b"late content"]


def test_pending_limit_and_rate_limit(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    for _ in range(3):
        assert create(hs, alice.access_token).status == 200
    # max_pending_media_uploads: 3 reserved IDs without content
    refused = create(hs, alice.access_token)
    assert (refused.status, refused.json()["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    assert refused.json()["retry_after_ms"] > 0
    # rc_media_create: the fifth creation in a burst of four is refused
    bob = hs.register_user("bob")
    statuses = [create(hs, bob.access_token).status for _ in range(2)]
    assert statuses == [200, 200]
    limited = create(hs, alice.access_token)
    assert (limited.status, limited.json()["errcode"]) == (429, "M_LIMIT_EXCEEDED")


def test_expired_media_id_cannot_be_uploaded(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    media = create(hs, alice.access_token).json()["content_uri"][len("mxc://") :]
    database = hs.homeserver.database
    assert database is not None
    hs.run_sync(database.execute("test", "UPDATE local_media SET created_ts = ?", 1_000))
    expired = put(hs, alice.access_token, media, b"too late")
    assert (expired.status, expired.json()["errcode"]) == (404, "M_NOT_FOUND")
    gone = download(hs, alice.access_token, media)
    assert (gone.status, gone.json()["errcode"]) == (404, "M_NOT_FOUND")
