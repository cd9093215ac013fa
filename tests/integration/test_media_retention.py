"""media_retention, quarantine and deletion, on both engines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import RunningHomeserver, make_config, start_homeserver
from tests.integration.media_helpers import (
    CLIENT_MEDIA,
    download,
    image_bytes,
    store_files,
    upload_ok,
)


@pytest.fixture
def hs(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    config = make_config(
        tmp_path,
        db_config,
        media_retention={"local_media_lifetime": "1s", "remote_media_lifetime": "1s"},
    )
    running = start_homeserver(config, reactor_thread, run_sync)
    yield running
    running.stop()


def test_retention_purges_unused_media_and_keeps_avatars(
    hs: RunningHomeserver, tmp_path: Path
) -> None:
    housekeeping = hs.homeserver.media_housekeeping
    assert [loop.running for loop in housekeeping._loops] == [True, True]
    alice = hs.register_user("alice")
    token = alice.access_token
    old = upload_ok(hs, token, image_bytes(64, 64), "image/png")
    avatar = upload_ok(hs, token, b"avatar", "image/png")
    protected = upload_ok(hs, token, b"protected", "text/plain")
    quarantined = upload_ok(hs, token, b"quarantined", "text/plain")
    assert (
        hs.request(
            "GET", f"{CLIENT_MEDIA}/thumbnail/{old}?width=32&height=32", access_token=token
        ).status
        == 200
    )
    result = hs.request(
        "PUT",
        f"/_matrix/client/v3/profile/{alice.user_id}/avatar_url",
        body={"avatar_url": f"mxc://{avatar}"},
        access_token=token,
    )
    assert result.status == 200
    media = hs.homeserver.media
    assert hs.run_sync(media.protect_media(protected.split("/")[1]))
    assert hs.run_sync(
        media.quarantine_media("hs.test", quarantined.split("/")[1], "@admin:hs.test")
    )
    assert download(hs, token, quarantined).status == 404

    time.sleep(1.2)
    fresh = upload_ok(hs, token, b"fresh", "text/plain")
    local, remote = hs.run_sync(housekeeping.purge())
    assert (local, remote) == (1, 0)

    gone = download(hs, token, old)
    assert (gone.status, gone.json()["errcode"]) == (404, "M_NOT_FOUND")
    for kept in (avatar, protected, fresh):
        assert download(hs, token, kept).status == 200
    # The purged file and its thumbnail left the disk; the shard folders too.
    old_id = old.split("/")[1]
    names = [str(p) for p in store_files(tmp_path / "media_store")]
    assert not any(old_id[4:] in name for name in names)
    assert not (tmp_path / "media_store" / "local_content" / old_id[:2] / old_id[2:4]).exists()
    assert len(names) == 4

    # Downloads count as use: recently downloaded media survives the next purge.
    time.sleep(1.2)
    assert download(hs, token, fresh).status == 200
    local, _ = hs.run_sync(housekeeping.purge())
    assert local == 0  # avatar kept, protected kept, quarantined kept, fresh just used
    assert download(hs, token, fresh).status == 200


def test_quarantine_and_delete(hs: RunningHomeserver, tmp_path: Path) -> None:
    alice = hs.register_user("alice")
    token = alice.access_token
    first = upload_ok(hs, token, b"first", "text/plain")
    second = upload_ok(hs, token, b"second", "text/plain")
    media = hs.homeserver.media
    assert hs.run_sync(media.quarantine_media_of_user(alice.user_id, "@admin:hs.test")) == 2
    assert download(hs, token, first).status == 404
    # Identical content uploaded again is quarantined on arrival.
    again = upload_ok(hs, token, b"first", "text/plain")
    assert download(hs, token, again).status == 404
    # An admin may look anyway; others may not ask to.
    admin = hs.register_user("root", admin=True)
    bypass = f"{CLIENT_MEDIA}/download/{first}?admin_unsafely_bypass_quarantine=true"
    assert hs.request("GET", bypass, access_token=admin.access_token).body == b"first"
    assert hs.request("GET", bypass, access_token=token).status == 400
    assert hs.run_sync(media.quarantine_media("hs.test", second.split("/")[1], None))
    assert download(hs, token, second).body == b"second"

    assert hs.run_sync(media.delete_media_of_user(alice.user_id)) == 3
    assert store_files(tmp_path / "media_store") == []
    assert download(hs, token, second).status == 404
    assert hs.run_sync(media.delete_local_media(["../../etc", "nonexistent1"])) == 0
