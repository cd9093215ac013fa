"""/profile: display name, avatar URL, other fields; over real HTTP, on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from homeserver.types import Requester
from tests.integration.harness import RunningHomeserver, make_config, start_homeserver

V3 = "/_matrix/client/v3"
R0 = "/_matrix/client/r0"


class RecordingSync:
    """A MembershipSync that records what the rooms core would be asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def profile_changed(
        self, requester: Requester, displayname: str | None, avatar_url: str | None
    ) -> None:
        self.calls.append(("profile_changed", requester.user_id, displayname, avatar_url))

    async def user_deactivated(self, user_id: str) -> None:
        self.calls.append(("user_deactivated", user_id))


@pytest.fixture
def homeserver(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    running = start_homeserver(make_config(tmp_path, db_config), reactor_thread, run_sync)
    yield running
    running.stop()


def test_profile_roundtrip(homeserver: RunningHomeserver) -> None:
    sync = RecordingSync()
    homeserver.homeserver.accounts.set_membership_sync(sync)
    alice = homeserver.register_user("alice")
    path = f"{V3}/profile/{alice.user_id}"
    assert homeserver.request("GET", path).json() == {"displayname": "alice"}
    for prefix in (V3, R0):
        assert homeserver.request(
            "GET", f"{prefix}/profile/{alice.user_id}/displayname"
        ).json() == {"displayname": "alice"}
    token = alice.access_token
    result = homeserver.request(
        "PUT", f"{path}/displayname", body={"displayname": "Alice A"}, access_token=token
    )
    assert (result.status, result.json()) == (200, {})
    result = homeserver.request(
        "PUT",
        f"{R0}/profile/{alice.user_id}/avatar_url",
        body={"avatar_url": "mxc://hs.test/abc"},
        access_token=token,
    )
    assert result.status == 200
    result = homeserver.request(
        "PUT", f"{path}/m.tz", body={"m.tz": "Europe/Paris"}, access_token=token
    )
    assert result.status == 200
    result = homeserver.request(
        "PUT",
        f"{path}/org.example.mood",
        body={"org.example.mood": {"happy": True}},
        access_token=token,
    )
    assert result.status == 200
    assert homeserver.request("GET", path).json() == {
        "displayname": "Alice A",
        "avatar_url": "mxc://hs.test/abc",
        "m.tz": "Europe/Paris",
        "org.example.mood": {"happy": True},
    }
    assert homeserver.request("GET", f"{path}/avatar_url").json() == {
        "avatar_url": "mxc://hs.test/abc"
    }
    # Setting the same value again is not a change.
    homeserver.request(
        "PUT", f"{path}/displayname", body={"displayname": "Alice A"}, access_token=token
    )
    deleted = homeserver.request("DELETE", f"{path}/avatar_url", access_token=token)
    assert deleted.status == 200
    homeserver.request("DELETE", f"{path}/org.example.mood", access_token=token)
    missing = homeserver.request("GET", f"{path}/avatar_url")
    assert (missing.status, missing.json()["errcode"]) == (404, "M_NOT_FOUND")
    assert homeserver.request("GET", path).json() == {
        "displayname": "Alice A",
        "m.tz": "Europe/Paris",
    }
    # An empty display name removes it.
    homeserver.request("PUT", f"{path}/displayname", body={"displayname": ""}, access_token=token)
    assert "displayname" not in homeserver.request("GET", path).json()
    assert sync.calls == [
        ("profile_changed", alice.user_id, "Alice A", None),
        ("profile_changed", alice.user_id, "Alice A", "mxc://hs.test/abc"),
        ("profile_changed", alice.user_id, "Alice A", None),
        ("profile_changed", alice.user_id, None, None),
    ]


def test_profile_errors(homeserver: RunningHomeserver) -> None:
    alice = homeserver.register_user("alice")
    bob = homeserver.register_user("bob")
    token = alice.access_token
    for path in (f"{V3}/profile/@nobody:hs.test", f"{V3}/profile/@nobody:hs.test/displayname"):
        result = homeserver.request("GET", path)
        assert (result.status, result.json()["errcode"]) == (404, "M_NOT_FOUND")
    # A remote user's server that cannot be reached (federation asks it): 502.
    result = homeserver.request("GET", f"{V3}/profile/@someone:remote.test")
    assert (result.status, result.json()["errcode"]) == (502, "M_UNKNOWN")
    result = homeserver.request("GET", f"{V3}/profile/not-a-user-id")
    assert (result.status, result.json()["errcode"]) == (400, "M_INVALID_PARAM")
    other = homeserver.request(
        "PUT",
        f"{V3}/profile/{bob.user_id}/displayname",
        body={"displayname": "x"},
        access_token=token,
    )
    assert (other.status, other.json()["errcode"]) == (403, "M_FORBIDDEN")
    other = homeserver.request(
        "DELETE", f"{V3}/profile/{bob.user_id}/displayname", access_token=token
    )
    assert (other.status, other.json()["errcode"]) == (403, "M_FORBIDDEN")
    unauthenticated = homeserver.request(
        "PUT", f"{V3}/profile/{alice.user_id}/displayname", body={"displayname": "x"}
    )
    assert (unauthenticated.status, unauthenticated.json()["errcode"]) == (401, "M_MISSING_TOKEN")
    path = f"{V3}/profile/{alice.user_id}"
    cases = [
        ("displayname", {"displayname": 5}, "M_INVALID_PARAM"),
        ("displayname", {"displayname": None}, "M_INVALID_PARAM"),
        ("displayname", {"displayname": "x" * 257}, "M_INVALID_PARAM"),
        ("displayname", {}, "M_MISSING_PARAM"),
        ("avatar_url", {"avatar_url": ["mxc://a/b"]}, "M_INVALID_PARAM"),
        ("avatar_url", {"displayname": "x"}, "M_MISSING_PARAM"),
        ("Bad_Key", {"Bad_Key": 1}, "M_INVALID_PARAM"),
        ("nonamespace", {"nonamespace": 1}, "M_INVALID_PARAM"),
        ("a." + "b" * 300, {"a." + "b" * 300: 1}, "M_KEY_TOO_LARGE"),
        ("org.example.big", {"org.example.big": "x" * 70_000}, "M_PROFILE_TOO_LARGE"),
    ]
    for key, body, errcode in cases:
        result = homeserver.request("PUT", f"{path}/{key}", body=body, access_token=token)
        assert (result.status, result.json()["errcode"]) == (400, errcode), (key, body)
    result = homeserver.request("PUT", f"{path}/displayname", body=b"nope", access_token=token)
    assert (result.status, result.json()["errcode"]) == (400, "M_NOT_JSON")
    # Nothing was half-written.
    assert homeserver.request("GET", path).json() == {"displayname": "alice"}


def test_profile_changes_can_be_disabled(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    running = start_homeserver(
        make_config(tmp_path, db_config, enable_set_displayname=False),
        reactor_thread,
        run_sync,
    )
    try:
        alice = running.register_user("alice")
        result = running.request(
            "PUT",
            f"{V3}/profile/{alice.user_id}/displayname",
            body={"displayname": "x"},
            access_token=alice.access_token,
        )
        assert (result.status, result.json()["errcode"]) == (403, "M_FORBIDDEN")
        result = running.request(
            "PUT",
            f"{V3}/profile/{alice.user_id}/avatar_url",
            body={"avatar_url": "mxc://a/b"},
            access_token=alice.access_token,
        )
        assert result.status == 200
    finally:
        running.stop()
