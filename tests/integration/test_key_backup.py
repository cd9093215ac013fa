"""/room_keys/version and /room_keys/keys, over real HTTP on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.e2e_helpers import V3, serve
from tests.integration.harness import RunningHomeserver

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
ROOM = "!room:hs.test"
OTHER_ROOM = "!other:hs.test"


@pytest.fixture
def hs(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    yield from serve(tmp_path, db_config, reactor_thread, run_sync)


def key(first: int, forwarded: int, verified: bool, tag: str) -> dict[str, Any]:
    return {
        "first_message_index": first,
        "forwarded_count": forwarded,
        "is_verified": verified,
        "session_data": {"ciphertext": tag, "ephemeral": "e", "mac": "m"},
    }


def test_versions(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")

    def call(method: str, path: str, body: Any = None, token: str = alice.access_token) -> Any:
        return hs.request(method, f"{V3}/room_keys{path}", access_token=token, body=body)

    none = call("GET", "/version")
    assert (none.status, none.json()["errcode"]) == (404, "M_NOT_FOUND")
    created = call("POST", "/version", {"algorithm": ALGORITHM, "auth_data": {"public_key": "k"}})
    assert created.status == 200, created.body
    version = created.json()["version"]
    current = call("GET", "/version").json()
    assert current == {
        "algorithm": ALGORITHM,
        "auth_data": {"public_key": "k"},
        "count": 0,
        "etag": current["etag"],
        "version": version,
    }
    assert call("GET", f"/version/{version}").json() == current
    # Other users see none of it.
    assert call("GET", f"/version/{version}", token=bob.access_token).status == 404

    updated = call("PUT", f"/version/{version}", {"algorithm": ALGORITHM, "auth_data": {"p": 2}})
    assert updated.status == 200, updated.body
    assert call("GET", "/version").json()["auth_data"] == {"p": 2}
    for body, errcode in (
        ({"algorithm": "other.algorithm", "auth_data": {}}, "M_INVALID_PARAM"),
        ({"algorithm": ALGORITHM, "auth_data": {}, "version": "999"}, "M_INVALID_PARAM"),
        ({"algorithm": ALGORITHM}, "M_BAD_JSON"),
        ({"auth_data": {}}, "M_BAD_JSON"),
    ):
        result = call("PUT", f"/version/{version}", body)
        assert (result.status, result.json()["errcode"]) == (400, errcode), body
    assert call("PUT", "/version/999", {"algorithm": ALGORITHM, "auth_data": {}}).status == 404
    assert call("POST", "/version", {"algorithm": ALGORITHM}).status == 400

    newer = call("POST", "/version", {"algorithm": ALGORITHM, "auth_data": {}}).json()["version"]
    assert int(newer) > int(version)
    assert call("GET", "/version").json()["version"] == newer
    assert call("DELETE", f"/version/{newer}").status == 200
    assert call("DELETE", f"/version/{newer}").status == 200  # deleting again is fine
    assert call("GET", f"/version/{newer}").status == 404
    assert call("GET", "/version").json()["version"] == version
    assert call("DELETE", "/version/12345").status == 404
    assert call("GET", "/version/not-a-number").status == 404
    # A deleted version's number is never reused.
    latest = call("POST", "/version", {"algorithm": ALGORITHM, "auth_data": {}}).json()["version"]
    assert int(latest) > int(newer)


def test_keys(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")

    def call(method: str, path: str, body: Any = None) -> Any:
        return hs.request(
            method, f"{V3}/room_keys{path}", access_token=alice.access_token, body=body
        )

    old = call("POST", "/version", {"algorithm": ALGORITHM, "auth_data": {}}).json()["version"]
    version = call("POST", "/version", {"algorithm": ALGORITHM, "auth_data": {}}).json()["version"]
    etag0 = call("GET", "/version").json()["etag"]

    put = call(
        "PUT",
        f"/keys?version={version}",
        {
            "rooms": {
                ROOM: {"sessions": {"s1": key(5, 1, False, "a"), "s2": key(0, 0, True, "b")}},
                OTHER_ROOM: {"sessions": {"s3": key(0, 0, False, "c")}},
            }
        },
    )
    assert put.status == 200, put.body
    assert put.json()["count"] == 3 and put.json()["etag"] != etag0
    etag1 = put.json()["etag"]
    # The better-key rule: verified beats unverified, then lower first_message_index, then
    # lower forwarded_count; a worse key changes nothing (not even the etag).
    worse = call("PUT", f"/keys/{ROOM}/s2?version={version}", key(0, 0, False, "worse"))
    assert worse.json() == {"etag": etag1, "count": 3}
    lower_index = call("PUT", f"/keys/{ROOM}/s1?version={version}", key(3, 4, False, "d"))
    assert lower_index.json()["etag"] != etag1
    assert (
        call("PUT", f"/keys/{ROOM}/s1?version={version}", key(3, 5, False, "x")).json()["count"]
        == 3
    )
    fewer_forwards = call(
        "PUT", f"/keys/{ROOM}?version={version}", {"sessions": {"s1": key(3, 2, False, "e")}}
    )
    assert fewer_forwards.status == 200
    verified = call("PUT", f"/keys/{ROOM}/s1?version={version}", key(9, 9, True, "f"))
    assert verified.status == 200
    assert call("GET", f"/keys/{ROOM}/s1?version={version}").json() == key(9, 9, True, "f")
    assert call("PUT", f"/keys/{ROOM}/s1?version={version}", key(0, 0, False, "g")).status == 200
    assert (
        call("GET", f"/keys/{ROOM}/s1?version={version}").json()["session_data"]["ciphertext"]
        == "f"
    )
    assert call("GET", f"/keys/{ROOM}/s2?version={version}").json() == key(0, 0, True, "b")

    everything = call("GET", f"/keys?version={version}").json()
    assert set(everything["rooms"]) == {ROOM, OTHER_ROOM}
    assert set(everything["rooms"][ROOM]["sessions"]) == {"s1", "s2"}
    assert call("GET", f"/keys/{OTHER_ROOM}?version={version}").json() == {
        "sessions": {"s3": key(0, 0, False, "c")}
    }
    assert call("GET", f"/keys/!empty:hs.test?version={version}").json() == {"sessions": {}}
    missing = call("GET", f"/keys/{ROOM}/nope?version={version}")
    assert (missing.status, missing.json()["errcode"]) == (404, "M_NOT_FOUND")

    # Only the current version takes keys; unknown versions are 404; version is required.
    wrong = call("PUT", f"/keys/{ROOM}/s9?version={old}", key(0, 0, False, "h"))
    assert wrong.status == 403
    assert wrong.json()["errcode"] == "M_WRONG_ROOM_KEYS_VERSION"
    assert wrong.json()["current_version"] == version
    assert call("PUT", f"/keys/{ROOM}/s9?version=999", key(0, 0, False, "h")).status == 404
    assert call("GET", "/keys?version=999").status == 404
    no_version = call("GET", "/keys")
    assert (no_version.status, no_version.json()["errcode"]) == (400, "M_MISSING_PARAM")
    for body in (
        {"first_message_index": 0},
        {**key(0, 0, False, "i"), "is_verified": "yes"},
        {**key(0, 0, False, "i"), "forwarded_count": -1},
        {**key(0, 0, False, "i"), "session_data": "text"},
    ):
        bad = call("PUT", f"/keys/{ROOM}/s9?version={version}", body)
        assert (bad.status, bad.json()["errcode"]) == (400, "M_BAD_JSON"), body
    assert call("PUT", f"/keys?version={version}", {"rooms": []}).status == 400
    assert call("PUT", f"/keys?version={version}", {"rooms": {ROOM: {}}}).status == 400
    assert call("GET", "/version").json()["count"] == 3  # none of those stored anything

    # Deleting: one session, one room, everything; each answers the new etag and count.
    etag = call("GET", "/version").json()["etag"]
    one = call("DELETE", f"/keys/{ROOM}/s2?version={version}").json()
    assert one["count"] == 2 and one["etag"] != etag
    room = call("DELETE", f"/keys/{ROOM}?version={version}").json()
    assert room["count"] == 1
    assert call("DELETE", f"/keys?version={version}").json()["count"] == 0
    assert call("GET", f"/keys?version={version}").json() == {"rooms": {}}
    # Deleting a version deletes its keys.
    call("PUT", f"/keys/{ROOM}/s1?version={version}", key(0, 0, False, "j"))
    assert call("DELETE", f"/version/{version}").status == 200
    assert call("GET", f"/keys?version={version}").status == 404
