"""Login, logout, whoami, the authenticator, refresh tokens: over real HTTP, on both engines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import RunningHomeserver, make_config, start_homeserver

V3 = "/_matrix/client/v3"
R0 = "/_matrix/client/r0"


def _start(tmp_path: Path, db_config: Any, reactor: Any, run_sync: Any, **extra: Any) -> Any:
    return start_homeserver(make_config(tmp_path, db_config, **extra), reactor, run_sync)


@pytest.fixture
def homeserver(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    running = _start(tmp_path, db_config, reactor_thread, run_sync)
    yield running
    running.stop()


def _password_login(user: Any, password: str = "password", **extra: Any) -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        **extra,
    }


def test_login_flows_advertise_only_password(homeserver: RunningHomeserver) -> None:
    for prefix in (V3, R0):
        result = homeserver.request("GET", f"{prefix}/login")
        assert result.status == 200
        assert result.json() == {"flows": [{"type": "m.login.password"}]}


def test_login_with_localpart_full_id_and_legacy_user(homeserver: RunningHomeserver) -> None:
    alice = homeserver.register_user("alice", "secret")
    for who in ("alice", "@alice:hs.test", "ALICE"):
        result = homeserver.request("POST", f"{V3}/login", body=_password_login(who, "secret"))
        assert result.status == 200, result.body
        body = result.json()
        assert body["user_id"] == alice.user_id
        assert body["home_server"] == "hs.test"
        assert body["device_id"] and body["access_token"]
        assert "refresh_token" not in body and "expires_in_ms" not in body
    legacy = {"type": "m.login.password", "user": "alice", "password": "secret"}
    result = homeserver.request("POST", f"{R0}/login", body=legacy)
    assert result.status == 200, result.body
    whoami = homeserver.request(
        "GET", f"{V3}/account/whoami", access_token=result.json()["access_token"]
    )
    assert whoami.json() == {
        "user_id": "@alice:hs.test",
        "device_id": result.json()["device_id"],
        "is_guest": False,
    }


def test_login_with_device_id_and_display_name(homeserver: RunningHomeserver) -> None:
    homeserver.register_user("bob")
    body = homeserver.login("bob", device_id="MYPHONE", initial_device_display_name="Phone")
    assert body["device_id"] == "MYPHONE"
    devices = homeserver.request("GET", f"{V3}/devices", access_token=body["access_token"])
    named = {d["device_id"]: d["display_name"] for d in devices.json()["devices"]}
    assert named["MYPHONE"] == "Phone"
    # Logging in again on the same device keeps it (and its name).
    again = homeserver.login("bob", device_id="MYPHONE", initial_device_display_name="Other")
    assert again["device_id"] == "MYPHONE"
    devices = homeserver.request("GET", f"{V3}/devices", access_token=again["access_token"])
    assert {d["device_id"]: d["display_name"] for d in devices.json()["devices"]}["MYPHONE"] == (
        "Phone"
    )


@pytest.mark.parametrize(
    ("body", "status", "errcode"),
    [
        ({"type": "m.login.password", "user": "carol", "password": "wrong"}, 403, "M_FORBIDDEN"),
        ({"type": "m.login.password", "user": "nobody", "password": "x"}, 403, "M_FORBIDDEN"),
        (
            {"type": "m.login.password", "user": "@carol:elsewhere.test", "password": "password"},
            403,
            "M_FORBIDDEN",
        ),
        ({"type": "m.login.token", "token": "abc"}, 400, "M_UNKNOWN"),
        ({"user": "carol", "password": "password"}, 400, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "user": "carol"}, 400, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "password": "password"}, 400, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "user": 12, "password": "password"}, 400, "M_INVALID_PARAM"),
        ({"type": "m.login.password", "user": "carol", "password": 5}, 400, "M_INVALID_PARAM"),
        (
            {"type": "m.login.password", "identifier": "carol", "password": "password"},
            400,
            "M_BAD_JSON",
        ),
        (
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@b"},
                "password": "password",
            },
            400,
            "M_UNKNOWN",
        ),
        (
            {"type": "m.login.password", "user": "carol", "password": "password", "device_id": 1},
            400,
            "M_INVALID_PARAM",
        ),
        (
            {
                "type": "m.login.password",
                "user": "carol",
                "password": "password",
                "refresh_token": "yes",
            },
            400,
            "M_INVALID_PARAM",
        ),
    ],
)
def test_login_bad_input(
    homeserver: RunningHomeserver, body: dict[str, Any], status: int, errcode: str
) -> None:
    homeserver.register_user("carol")
    result = homeserver.request("POST", f"{V3}/login", body=body)
    assert (result.status, result.json()["errcode"]) == (status, errcode), result.body


def test_login_not_json(homeserver: RunningHomeserver) -> None:
    result = homeserver.request("POST", f"{V3}/login", body=b"{not json")
    assert (result.status, result.json()["errcode"]) == (400, "M_NOT_JSON")
    result = homeserver.request("POST", f"{V3}/login", body=b"[1]")
    assert (result.status, result.json()["errcode"]) == (400, "M_BAD_JSON")


def test_missing_and_unknown_tokens(homeserver: RunningHomeserver) -> None:
    result = homeserver.request("GET", f"{V3}/account/whoami")
    assert (result.status, result.json()["errcode"]) == (401, "M_MISSING_TOKEN")
    result = homeserver.request("GET", f"{V3}/account/whoami", access_token="nope")
    assert result.status == 401
    assert result.json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert result.json()["soft_logout"] is False
    result = homeserver.request(
        "GET", f"{V3}/account/whoami", headers={"Authorization": "Basic abc"}
    )
    assert (result.status, result.json()["errcode"]) == (401, "M_MISSING_TOKEN")


def test_access_token_in_query_string(homeserver: RunningHomeserver) -> None:
    alice = homeserver.register_user("alice")
    result = homeserver.request("GET", f"{R0}/account/whoami?access_token={alice.access_token}")
    assert result.status == 200
    assert result.json()["user_id"] == "@alice:hs.test"


def test_logout_revokes_the_token_and_device(homeserver: RunningHomeserver) -> None:
    alice = homeserver.register_user("alice")
    other = homeserver.login("alice")
    # Use the token once so it is in the cache: logout must evict it.
    assert (
        homeserver.request("GET", f"{V3}/account/whoami", access_token=other["access_token"]).status
        == 200
    )
    result = homeserver.request("POST", f"{V3}/logout", access_token=other["access_token"], body={})
    assert (result.status, result.json()) == (200, {})
    gone = homeserver.request("GET", f"{V3}/account/whoami", access_token=other["access_token"])
    assert (gone.status, gone.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    devices = homeserver.request("GET", f"{V3}/devices", access_token=alice.access_token).json()
    assert [d["device_id"] for d in devices["devices"]] == [alice.device_id]


def test_logout_all(homeserver: RunningHomeserver) -> None:
    alice = homeserver.register_user("alice")
    tokens = [alice.access_token] + [homeserver.login("alice")["access_token"] for _ in range(2)]
    for token in tokens:
        assert homeserver.request("GET", f"{V3}/account/whoami", access_token=token).status == 200
    result = homeserver.request("POST", f"{R0}/logout/all", access_token=tokens[1], body={})
    assert result.status == 200
    for token in tokens:
        result = homeserver.request("GET", f"{V3}/account/whoami", access_token=token)
        assert result.status == 401
    fresh = homeserver.login("alice")
    devices = homeserver.request("GET", f"{V3}/devices", access_token=fresh["access_token"])
    assert [d["device_id"] for d in devices.json()["devices"]] == [fresh["device_id"]]


def test_refresh_token_rotation(homeserver: RunningHomeserver) -> None:
    homeserver.register_user("alice")
    first = homeserver.login("alice", refresh_token=True)
    assert first["refresh_token"] and first["expires_in_ms"] == 5 * 60_000
    # /refresh is v1.3+: only under /v3.
    assert homeserver.request("POST", f"{R0}/refresh", body={}).status == 404
    second = homeserver.request(
        "POST", f"{V3}/refresh", body={"refresh_token": first["refresh_token"]}
    )
    assert second.status == 200, second.body
    second_body = second.json()
    assert set(second_body) == {"access_token", "refresh_token", "expires_in_ms"}
    # The old refresh token may be reused until the new tokens are used (a lost response).
    retry = homeserver.request(
        "POST", f"{V3}/refresh", body={"refresh_token": first["refresh_token"]}
    )
    assert retry.status == 200
    newest = retry.json()
    whoami = homeserver.request("GET", f"{V3}/account/whoami", access_token=newest["access_token"])
    assert whoami.json()["device_id"] == first["device_id"]
    # The superseded second pair is gone, and the first refresh token is now spent.
    result = homeserver.request(
        "GET", f"{V3}/account/whoami", access_token=second_body["access_token"]
    )
    assert result.status == 401
    spent = homeserver.request(
        "POST", f"{V3}/refresh", body={"refresh_token": first["refresh_token"]}
    )
    assert (spent.status, spent.json()["errcode"]) == (403, "M_FORBIDDEN")
    # Refreshing the newest one works, and removes the first generation entirely.
    third = homeserver.request(
        "POST", f"{V3}/refresh", body={"refresh_token": newest["refresh_token"]}
    )
    assert third.status == 200
    old = homeserver.request("GET", f"{V3}/account/whoami", access_token=first["access_token"])
    assert old.status == 401
    gone = homeserver.request(
        "POST", f"{V3}/refresh", body={"refresh_token": first["refresh_token"]}
    )
    assert (gone.status, gone.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")


def test_refresh_bad_input(homeserver: RunningHomeserver) -> None:
    result = homeserver.request("POST", f"{V3}/refresh", body={})
    assert (result.status, result.json()["errcode"]) == (400, "M_MISSING_PARAM")
    result = homeserver.request("POST", f"{V3}/refresh", body={"refresh_token": 3})
    assert (result.status, result.json()["errcode"]) == (400, "M_INVALID_PARAM")
    result = homeserver.request("POST", f"{V3}/refresh", body={"refresh_token": "nope"})
    assert (result.status, result.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")


def test_expired_access_token_is_a_soft_logout(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    homeserver = _start(
        tmp_path,
        db_config,
        reactor_thread,
        run_sync,
        refreshable_access_token_lifetime="1s",
        refresh_token_lifetime="2s",
        nonrefreshable_access_token_lifetime="1h",
    )
    try:
        homeserver.register_user("alice")
        login = homeserver.login("alice", refresh_token=True)
        plain = homeserver.login("alice")
        assert login["expires_in_ms"] == 1000
        assert plain["expires_in_ms"] == 3_600_000 and "refresh_token" not in plain
        time.sleep(1.1)
        result = homeserver.request(
            "GET", f"{V3}/account/whoami", access_token=login["access_token"]
        )
        assert result.status == 401
        assert result.json()["errcode"] == "M_UNKNOWN_TOKEN"
        assert result.json()["soft_logout"] is True
        refreshed = homeserver.request(
            "POST", f"{V3}/refresh", body={"refresh_token": login["refresh_token"]}
        )
        assert refreshed.status == 200
        token = refreshed.json()["access_token"]
        assert homeserver.request("GET", f"{V3}/account/whoami", access_token=token).status == 200
        time.sleep(2.1)
        expired = homeserver.request(
            "POST", f"{V3}/refresh", body={"refresh_token": refreshed.json()["refresh_token"]}
        )
        assert (expired.status, expired.json()["errcode"]) == (403, "M_FORBIDDEN")
    finally:
        homeserver.stop()


def test_refresh_disabled_issues_no_refresh_token(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    homeserver = _start(
        tmp_path, db_config, reactor_thread, run_sync, refreshable_access_token_lifetime=None
    )
    try:
        homeserver.register_user("alice")
        login = homeserver.login("alice", refresh_token=True)
        assert "refresh_token" not in login and "expires_in_ms" not in login
    finally:
        homeserver.stop()


def test_session_lifetime_caps_tokens(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    homeserver = _start(tmp_path, db_config, reactor_thread, run_sync, session_lifetime="1s")
    try:
        homeserver.register_user("alice")
        login = homeserver.login("alice", refresh_token=True)
        assert login["expires_in_ms"] == 1000
        time.sleep(1.1)
        result = homeserver.request(
            "POST", f"{V3}/refresh", body={"refresh_token": login["refresh_token"]}
        )
        assert (result.status, result.json()["errcode"]) == (403, "M_FORBIDDEN")
    finally:
        homeserver.stop()


def test_login_rate_limits(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    homeserver = _start(
        tmp_path,
        db_config,
        reactor_thread,
        run_sync,
        rc_login={
            "address": {"per_second": 0.001, "burst_count": 100},
            "account": {"per_second": 0.001, "burst_count": 2},
            "failed_attempts": {"per_second": 0.001, "burst_count": 2},
        },
    )
    try:
        homeserver.register_user("alice")
        homeserver.register_user("bob")
        # Failed attempts: two wrong passwords, then even the right one waits.
        for _ in range(2):
            result = homeserver.request("POST", f"{V3}/login", body=_password_login("alice", "no"))
            assert result.status == 403
        result = homeserver.request("POST", f"{V3}/login", body=_password_login("alice"))
        assert result.status == 429
        assert result.json()["errcode"] == "M_LIMIT_EXCEEDED"
        assert result.json()["retry_after_ms"] > 0
        # Per account: two successful logins to bob, then 429.
        for _ in range(2):
            assert (
                homeserver.request("POST", f"{V3}/login", body=_password_login("bob")).status == 200
            )
        result = homeserver.request("POST", f"{V3}/login", body=_password_login("bob"))
        assert (result.status, result.json()["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    finally:
        homeserver.stop()


def test_login_address_rate_limit(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    homeserver = _start(
        tmp_path,
        db_config,
        reactor_thread,
        run_sync,
        rc_login={"address": {"per_second": 0.001, "burst_count": 2}},
    )
    try:
        for _ in range(2):
            result = homeserver.request("POST", f"{V3}/login", body=_password_login("x", "y"))
            assert result.status == 403
        result = homeserver.request("POST", f"{V3}/login", body=_password_login("x", "y"))
        assert (result.status, result.json()["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    finally:
        homeserver.stop()
