"""/account/password and /account/deactivate: over real HTTP, on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import RunningHomeserver, make_config, start_homeserver
from tests.integration.test_profile import RecordingSync

V3 = "/_matrix/client/v3"
R0 = "/_matrix/client/r0"


@pytest.fixture
def homeserver(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    running = start_homeserver(make_config(tmp_path, db_config), reactor_thread, run_sync)
    yield running
    running.stop()


def _auth(user: str, session: str, password: str = "password") -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        "session": session,
    }


def _whoami(hs: RunningHomeserver, token: str) -> int:
    return hs.request("GET", f"{V3}/account/whoami", access_token=token).status


def test_change_password_logs_out_other_devices(homeserver: RunningHomeserver) -> None:
    alice = homeserver.register_user("alice")
    other = homeserver.login("alice")
    first = homeserver.request(
        "POST",
        f"{V3}/account/password",
        body={"new_password": "new"},
        access_token=alice.access_token,
    )
    assert first.status == 401
    assert first.json()["flows"] == [{"stages": ["m.login.password"]}]
    session = first.json()["session"]
    wrong = homeserver.request(
        "POST",
        f"{V3}/account/password",
        body={"new_password": "new", "auth": _auth("alice", session, "wrong")},
        access_token=alice.access_token,
    )
    assert (wrong.status, wrong.json()["errcode"]) == (401, "M_FORBIDDEN")
    done = homeserver.request(
        "POST",
        f"{V3}/account/password",
        body={"new_password": "new", "auth": _auth("alice", session)},
        access_token=alice.access_token,
    )
    assert (done.status, done.json()) == (200, {})
    assert _whoami(homeserver, alice.access_token) == 200
    assert _whoami(homeserver, other["access_token"]) == 401
    devices = homeserver.request("GET", f"{V3}/devices", access_token=alice.access_token).json()
    assert [d["device_id"] for d in devices["devices"]] == [alice.device_id]
    old = homeserver.request(
        "POST",
        f"{V3}/login",
        body={"type": "m.login.password", "user": "alice", "password": "password"},
    )
    assert (old.status, old.json()["errcode"]) == (403, "M_FORBIDDEN")
    assert homeserver.login("alice", "new")["user_id"] == alice.user_id


def test_change_password_keeping_devices(homeserver: RunningHomeserver) -> None:
    alice = homeserver.register_user("alice")
    other = homeserver.login("alice")
    first = homeserver.request(
        "POST", f"{R0}/account/password", body={}, access_token=alice.access_token
    )
    session = first.json()["session"]
    done = homeserver.request(
        "POST",
        f"{R0}/account/password",
        body={
            "new_password": "new",
            "logout_devices": False,
            "auth": _auth(alice.user_id, session),
        },
        access_token=alice.access_token,
    )
    assert done.status == 200, done.body
    assert _whoami(homeserver, other["access_token"]) == 200


def test_change_password_bad_input(homeserver: RunningHomeserver) -> None:
    alice = homeserver.register_user("alice")
    token = alice.access_token
    for body, errcode in [
        ({"new_password": 5}, "M_INVALID_PARAM"),
        ({"new_password": "x" * 513}, "M_INVALID_PARAM"),
    ]:
        result = homeserver.request("POST", f"{V3}/account/password", body=body, access_token=token)
        assert (result.status, result.json()["errcode"]) == (400, errcode)
    first = homeserver.request("POST", f"{V3}/account/password", body={}, access_token=token)
    session = first.json()["session"]
    missing = homeserver.request(
        "POST", f"{V3}/account/password", body={"auth": _auth("alice", session)}, access_token=token
    )
    assert (missing.status, missing.json()["errcode"]) == (400, "M_MISSING_PARAM")
    bad_flag = homeserver.request(
        "POST",
        f"{V3}/account/password",
        body={"new_password": "n", "logout_devices": "no", "auth": _auth("alice", session)},
        access_token=token,
    )
    assert (bad_flag.status, bad_flag.json()["errcode"]) == (400, "M_INVALID_PARAM")
    # The password is unchanged.
    assert homeserver.login("alice")["user_id"] == alice.user_id


def test_uia_password_failures_are_rate_limited(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    running = start_homeserver(
        make_config(
            tmp_path,
            db_config,
            rc_login={"failed_attempts": {"per_second": 0.001, "burst_count": 2}},
        ),
        reactor_thread,
        run_sync,
    )
    try:
        alice = running.register_user("alice")
        token = alice.access_token
        session = running.request(
            "POST", f"{V3}/account/password", body={}, access_token=token
        ).json()["session"]
        statuses = []
        for password in ("bad1", "bad2", "password"):
            result = running.request(
                "POST",
                f"{V3}/account/password",
                body={"new_password": "n", "auth": _auth("alice", session, password)},
                access_token=token,
            )
            statuses.append((result.status, result.json().get("errcode")))
        assert statuses == [(401, "M_FORBIDDEN"), (401, "M_FORBIDDEN"), (429, "M_LIMIT_EXCEEDED")]
    finally:
        running.stop()


def test_deactivate(homeserver: RunningHomeserver) -> None:
    sync = RecordingSync()
    homeserver.homeserver.accounts.set_membership_sync(sync)
    alice = homeserver.register_user("alice")
    other = homeserver.login("alice", refresh_token=True)
    first = homeserver.request(
        "POST", f"{V3}/account/deactivate", body={}, access_token=alice.access_token
    )
    assert first.status == 401
    session = first.json()["session"]
    done = homeserver.request(
        "POST",
        f"{V3}/account/deactivate",
        body={"auth": _auth("alice", session), "erase": True},
        access_token=alice.access_token,
    )
    assert done.status == 200, done.body
    assert done.json() == {"id_server_unbind_result": "no-support"}
    assert sync.calls == [("user_deactivated", alice.user_id)]
    for token in (alice.access_token, other["access_token"]):
        result = homeserver.request("GET", f"{V3}/account/whoami", access_token=token)
        assert (result.status, result.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    refresh = homeserver.request(
        "POST", f"{V3}/refresh", body={"refresh_token": other["refresh_token"]}
    )
    assert refresh.status == 401
    login = homeserver.request(
        "POST",
        f"{V3}/login",
        body={"type": "m.login.password", "user": "alice", "password": "password"},
    )
    assert (login.status, login.json()["errcode"]) == (403, "M_USER_DEACTIVATED")
    # Erased: the profile is empty; the user ID stays taken.
    assert homeserver.request("GET", f"{V3}/profile/{alice.user_id}").json() == {}
    taken = homeserver.request("GET", f"{V3}/register/available?username=alice")
    assert taken.status in (400, 403)


def test_deactivate_without_erase_keeps_profile(homeserver: RunningHomeserver) -> None:
    alice = homeserver.register_user("alice")
    first = homeserver.request(
        "POST", f"{R0}/account/deactivate", body={}, access_token=alice.access_token
    )
    session = first.json()["session"]
    done = homeserver.request(
        "POST",
        f"{R0}/account/deactivate",
        body={"auth": _auth(alice.user_id, session)},
        access_token=alice.access_token,
    )
    assert done.status == 200
    assert homeserver.request("GET", f"{V3}/profile/{alice.user_id}").json() == {
        "displayname": "alice"
    }
