"""/devices, /devices/{deviceId}, /delete_devices: over real HTTP, on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import RunningHomeserver, make_config, start_homeserver

V3 = "/_matrix/client/v3"
R0 = "/_matrix/client/r0"


@pytest.fixture
def homeserver(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    running = start_homeserver(make_config(tmp_path, db_config), reactor_thread, run_sync)
    yield running
    running.stop()


def _password_auth(user_id: str, session: str, password: str = "password") -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": password,
        "session": session,
    }


def test_list_get_and_rename(homeserver: RunningHomeserver) -> None:
    alice = homeserver.register_user("alice")
    phone = homeserver.login("alice", device_id="PHONE", initial_device_display_name="Phone")
    for prefix in (V3, R0):
        listed = homeserver.request("GET", f"{prefix}/devices", access_token=alice.access_token)
        assert listed.status == 200
        devices = {d["device_id"]: d for d in listed.json()["devices"]}
        assert set(devices) == {alice.device_id, "PHONE"}
        assert set(devices["PHONE"]) == {
            "device_id",
            "display_name",
            "last_seen_ip",
            "last_seen_ts",
        }
        assert devices["PHONE"]["display_name"] == "Phone"
    # The request just made is "last seen" (kept in memory until the batched write).
    mine = homeserver.request(
        "GET", f"{V3}/devices/{alice.device_id}", access_token=alice.access_token
    ).json()
    assert mine["last_seen_ip"] == "127.0.0.1" and mine["last_seen_ts"] > 0

    renamed = homeserver.request(
        "PUT",
        f"{V3}/devices/PHONE",
        body={"display_name": "Work phone"},
        access_token=phone["access_token"],
    )
    assert (renamed.status, renamed.json()) == (200, {})
    got = homeserver.request("GET", f"{R0}/devices/PHONE", access_token=alice.access_token)
    assert got.json()["display_name"] == "Work phone"
    # No display_name: nothing changes.
    same = homeserver.request(
        "PUT", f"{V3}/devices/PHONE", body={}, access_token=alice.access_token
    )
    assert same.status == 200


def test_device_errors(homeserver: RunningHomeserver) -> None:
    alice = homeserver.register_user("alice")
    bob = homeserver.register_user("bob")
    token = alice.access_token
    for method, body in (("GET", None), ("PUT", {"display_name": "x"}), ("PUT", {})):
        result = homeserver.request(method, f"{V3}/devices/NOPE", body=body, access_token=token)
        assert (result.status, result.json()["errcode"]) == (404, "M_NOT_FOUND")
    # Another user's device is not found either.
    result = homeserver.request("GET", f"{V3}/devices/{bob.device_id}", access_token=token)
    assert result.status == 404
    result = homeserver.request(
        "PUT", f"{V3}/devices/{alice.device_id}", body={"display_name": 5}, access_token=token
    )
    assert (result.status, result.json()["errcode"]) == (400, "M_INVALID_PARAM")
    result = homeserver.request(
        "PUT",
        f"{V3}/devices/{alice.device_id}",
        body={"display_name": "x" * 101},
        access_token=token,
    )
    assert (result.status, result.json()["errcode"]) == (400, "M_TOO_LARGE")
    assert homeserver.request("GET", f"{V3}/devices").status == 401
    bad_bodies: list[dict[str, Any]] = [{}, {"devices": "ALL"}, {"devices": [1]}]
    for bad in bad_bodies:
        result = homeserver.request("POST", f"{V3}/delete_devices", body=bad, access_token=token)
        assert result.status == 400, bad


def test_delete_device_needs_password_and_revokes_tokens(homeserver: RunningHomeserver) -> None:
    alice = homeserver.register_user("alice")
    phone = homeserver.login("alice", device_id="PHONE")
    token = alice.access_token
    assert (
        homeserver.request("GET", f"{V3}/account/whoami", access_token=phone["access_token"]).status
        == 200
    )

    first = homeserver.request("DELETE", f"{V3}/devices/PHONE", access_token=token)
    assert first.status == 401
    body = first.json()
    assert body["flows"] == [{"stages": ["m.login.password"]}]
    session = body["session"]
    wrong = homeserver.request(
        "DELETE",
        f"{V3}/devices/PHONE",
        body={"auth": _password_auth(alice.user_id, session, "wrong")},
        access_token=token,
    )
    assert wrong.status == 401
    assert wrong.json()["errcode"] == "M_FORBIDDEN" and wrong.json()["session"] == session
    # Another user's password does not do.
    homeserver.register_user("bob")
    other = homeserver.request(
        "DELETE",
        f"{V3}/devices/PHONE",
        body={"auth": _password_auth("@bob:hs.test", session)},
        access_token=token,
    )
    assert (other.status, other.json()["errcode"]) == (401, "M_FORBIDDEN")
    done = homeserver.request(
        "DELETE",
        f"{V3}/devices/PHONE",
        body={"auth": _password_auth(alice.user_id, session)},
        access_token=token,
    )
    assert (done.status, done.json()) == (200, {})
    gone = homeserver.request("GET", f"{V3}/account/whoami", access_token=phone["access_token"])
    assert (gone.status, gone.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert homeserver.request("GET", f"{V3}/devices/PHONE", access_token=token).status == 404


def test_delete_devices(homeserver: RunningHomeserver) -> None:
    alice = homeserver.register_user("alice")
    logins = [homeserver.login("alice", refresh_token=True) for _ in range(2)]
    device_ids = [login["device_id"] for login in logins]
    first = homeserver.request(
        "POST",
        f"{R0}/delete_devices",
        body={"devices": device_ids},
        access_token=alice.access_token,
    )
    assert first.status == 401
    session = first.json()["session"]
    done = homeserver.request(
        "POST",
        f"{R0}/delete_devices",
        body={"devices": [*device_ids, "UNKNOWN"], "auth": _password_auth("alice", session)},
        access_token=alice.access_token,
    )
    assert done.status == 200, done.body
    for login in logins:
        gone = homeserver.request("GET", f"{V3}/account/whoami", access_token=login["access_token"])
        assert gone.status == 401
        refresh = homeserver.request(
            "POST", f"{V3}/refresh", body={"refresh_token": login["refresh_token"]}
        )
        assert (refresh.status, refresh.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    remaining = homeserver.request("GET", f"{V3}/devices", access_token=alice.access_token)
    assert [d["device_id"] for d in remaining.json()["devices"]] == [alice.device_id]


def test_last_seen_is_written_in_batches(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    config = make_config(tmp_path, db_config)
    running = start_homeserver(config, reactor_thread, run_sync)
    alice = running.register_user("alice")
    running.request(
        "GET",
        f"{V3}/account/whoami",
        access_token=alice.access_token,
        headers={"User-Agent": "TestClient/1.0"},
    )
    running.stop()  # writes what is pending
    restarted = start_homeserver(config, reactor_thread, run_sync)
    try:
        store = restarted.homeserver.accounts.device_store
        device = run_sync(store.get_device(alice.user_id, alice.device_id))
        assert device.last_seen_ip == "127.0.0.1"
        assert device.last_seen_user_agent == "TestClient/1.0"
        assert device.last_seen_ts > 0
    finally:
        restarted.stop()
