"""/register with user-interactive auth, registration tokens, guests, /register/available,
and the shared-secret admin registration: over real HTTP, on both engines."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import (
    TEST_SHARED_SECRET,
    RunningHomeserver,
    make_config,
    start_homeserver,
)

V3 = "/_matrix/client/v3"
R0 = "/_matrix/client/r0"
OPEN = {"enable_registration": True, "enable_registration_without_verification": True}

Starter = Callable[..., RunningHomeserver]


@pytest.fixture
def start(tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any) -> Iterator[Starter]:
    started: list[RunningHomeserver] = []

    def starter(**extra: Any) -> RunningHomeserver:
        running = start_homeserver(
            make_config(tmp_path, db_config, **extra), reactor_thread, run_sync
        )
        started.append(running)
        return running

    yield starter
    for running in started:
        running.stop()


def _uia_register(hs: RunningHomeserver, body: dict[str, Any], prefix: str = V3) -> Any:
    """Register through the dummy flow: the 401, then the same request with auth."""
    first = hs.request("POST", f"{prefix}/register", body=body)
    assert first.status == 401, first.body
    session = first.json()["session"]
    return hs.request(
        "POST",
        f"{prefix}/register",
        body={**body, "auth": {"type": "m.login.dummy", "session": session}},
    )


def test_registration_closed_by_default(start: Starter) -> None:
    hs = start()
    result = hs.request("POST", f"{V3}/register", body={"username": "a", "password": "p"})
    assert (result.status, result.json()["errcode"]) == (403, "M_FORBIDDEN")
    # enable_registration alone is not enough (as Synapse: some verification is needed).
    hs.stop()
    hs = start(enable_registration=True)
    result = hs.request("POST", f"{V3}/register", body={"username": "a", "password": "p"})
    assert (result.status, result.json()["errcode"]) == (403, "M_FORBIDDEN")


def test_register_with_dummy_flow(start: Starter) -> None:
    hs = start(**OPEN)
    first = hs.request("POST", f"{V3}/register", body={"username": "Alice", "password": "pw"})
    assert first.status == 401
    body = first.json()
    assert body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert body["params"] == {} and isinstance(body["session"], str)
    assert "errcode" not in body and "completed" not in body
    # The second request may carry only auth: the session remembers the rest.
    second = hs.request(
        "POST",
        f"{V3}/register",
        body={"auth": {"type": "m.login.dummy", "session": body["session"]}},
    )
    assert second.status == 200, second.body
    result = second.json()
    assert result["user_id"] == "@alice:hs.test"  # lower-cased, as Synapse
    assert result["home_server"] == "hs.test"
    whoami = hs.request("GET", f"{V3}/account/whoami", access_token=result["access_token"])
    assert whoami.json() == {
        "user_id": "@alice:hs.test",
        "device_id": result["device_id"],
        "is_guest": False,
    }
    # The display name defaults to the localpart.
    profile = hs.request("GET", f"{V3}/profile/@alice:hs.test")
    assert profile.json() == {"displayname": "alice"}
    # The password works for login; the session cannot be replayed.
    assert hs.login("@alice:hs.test", "pw")["user_id"] == "@alice:hs.test"
    replay = hs.request(
        "POST",
        f"{V3}/register",
        body={"auth": {"type": "m.login.dummy", "session": body["session"]}},
    )
    assert (replay.status, replay.json()["errcode"]) == (400, "M_UNKNOWN")


def test_register_options(start: Starter) -> None:
    hs = start(**OPEN)
    result = _uia_register(
        hs,
        {
            "username": "bob",
            "password": "pw",
            "device_id": "BOBPHONE",
            "initial_device_display_name": "Bob's phone",
            "refresh_token": True,
        },
        prefix=R0,
    )
    assert result.status == 200, result.body
    body = result.json()
    assert body["device_id"] == "BOBPHONE"
    assert body["refresh_token"] and body["expires_in_ms"] > 0
    device = hs.request("GET", f"{V3}/devices/BOBPHONE", access_token=body["access_token"])
    assert device.json()["display_name"] == "Bob's phone"

    inhibited = _uia_register(hs, {"username": "carol", "password": "pw", "inhibit_login": True})
    assert inhibited.status == 200
    assert inhibited.json() == {"user_id": "@carol:hs.test", "home_server": "hs.test"}
    assert hs.login("carol", "pw")["user_id"] == "@carol:hs.test"

    generated = _uia_register(hs, {"password": "pw"})
    assert generated.status == 200
    assert generated.json()["user_id"][1:].split(":")[0].isdigit()


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"username": "bad name", "password": "pw"}, "M_INVALID_USERNAME"),
        ({"username": "é", "password": "pw"}, "M_INVALID_USERNAME"),
        ({"username": "_hidden", "password": "pw"}, "M_INVALID_USERNAME"),
        ({"username": "12345", "password": "pw"}, "M_INVALID_USERNAME"),
        ({"username": "a" * 250, "password": "pw"}, "M_INVALID_USERNAME"),
        ({"username": 5, "password": "pw"}, "M_INVALID_USERNAME"),
        ({"username": "ok", "password": 5}, "M_INVALID_PARAM"),
        ({"username": "ok", "password": "x" * 513}, "M_INVALID_PARAM"),
        ({"username": "ok", "password": "pw", "device_id": []}, "M_INVALID_PARAM"),
        ({"username": "ok", "password": "pw", "inhibit_login": "yes"}, "M_INVALID_PARAM"),
        ({"username": "ok", "password": "pw", "auth": "dummy"}, "M_BAD_JSON"),
    ],
)
def test_register_bad_input(start: Starter, body: dict[str, Any], errcode: str) -> None:
    hs = start(**OPEN)
    result = hs.request("POST", f"{V3}/register", body=body)
    assert (result.status, result.json()["errcode"]) == (400, errcode), result.body


def test_register_taken_and_missing_password(start: Starter) -> None:
    hs = start(**OPEN)
    hs.register_user("dave")
    result = hs.request("POST", f"{V3}/register", body={"username": "dave", "password": "pw"})
    assert (result.status, result.json()["errcode"]) == (400, "M_USER_IN_USE")
    result = _uia_register(hs, {"username": "erin"})
    assert (result.status, result.json()["errcode"]) == (400, "M_MISSING_PARAM")
    assert hs.request("GET", f"{V3}/register/available?username=erin").json() == {"available": True}


def test_uia_errors(start: Starter) -> None:
    hs = start(**OPEN)
    first = hs.request("POST", f"{V3}/register", body={"username": "fred", "password": "pw"})
    session = first.json()["session"]
    wrong_stage = hs.request(
        "POST",
        f"{V3}/register",
        body={"auth": {"type": "m.login.password", "session": session}},
    )
    assert wrong_stage.status == 401
    body = wrong_stage.json()
    assert body["errcode"] == "M_UNRECOGNIZED"
    assert body["session"] == session and body["flows"] == [{"stages": ["m.login.dummy"]}]
    unknown = hs.request(
        "POST", f"{V3}/register", body={"auth": {"type": "m.login.dummy", "session": "nope"}}
    )
    assert (unknown.status, unknown.json()["errcode"]) == (400, "M_UNKNOWN")
    # A session belongs to the operation it started with.
    fred = hs.register_user("fred2")
    moved = hs.request(
        "POST",
        f"{V3}/account/password",
        body={"new_password": "x", "auth": {"type": "m.login.dummy", "session": session}},
        access_token=fred.access_token,
    )
    assert (moved.status, moved.json()["errcode"]) == (403, "M_FORBIDDEN")


def test_register_available(start: Starter) -> None:
    hs = start(**OPEN)
    hs.register_user("gina")
    for prefix in (V3, R0):
        assert hs.request("GET", f"{prefix}/register/available?username=new").json() == {
            "available": True
        }
        taken = hs.request("GET", f"{prefix}/register/available?username=GINA")
        assert (taken.status, taken.json()["errcode"]) == (400, "M_USER_IN_USE")
        bad = hs.request("GET", f"{prefix}/register/available?username=a%20b")
        assert (bad.status, bad.json()["errcode"]) == (400, "M_INVALID_USERNAME")
        missing = hs.request("GET", f"{prefix}/register/available")
        assert (missing.status, missing.json()["errcode"]) == (400, "M_MISSING_PARAM")


def test_registration_rate_limit(start: Starter) -> None:
    hs = start(**OPEN, rc_registration={"per_second": 0.001, "burst_count": 2})
    for name in ("r1", "r2"):
        assert _uia_register(hs, {"username": name, "password": "pw"}).status == 200
    result = _uia_register(hs, {"username": "r3", "password": "pw"})
    assert (result.status, result.json()["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    assert result.json()["retry_after_ms"] > 0
    assert hs.request("GET", f"{V3}/register/available?username=r3").json()["available"]


def test_guest_registration(start: Starter) -> None:
    hs = start()
    refused = hs.request("POST", f"{V3}/register?kind=guest", body={})
    assert (refused.status, refused.json()["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    hs.stop()
    hs = start(allow_guest_access=True)
    result = hs.request("POST", f"{V3}/register?kind=guest", body={})
    assert result.status == 200, result.body
    guest = result.json()
    assert guest["user_id"][1:].split(":")[0].isdigit()
    token = guest["access_token"]
    whoami = hs.request("GET", f"{V3}/account/whoami", access_token=token)
    assert whoami.json()["is_guest"] is True
    assert hs.request("GET", f"{V3}/devices", access_token=token).status == 200
    # Guests may set a display name, not other fields, nor use other endpoints.
    name = hs.request(
        "PUT",
        f"{V3}/profile/{guest['user_id']}/displayname",
        body={"displayname": "Guest"},
        access_token=token,
    )
    assert name.status == 200, name.body
    for method, path, body in [
        ("PUT", f"{V3}/profile/{guest['user_id']}/avatar_url", {"avatar_url": "mxc://a/b"}),
        ("POST", f"{V3}/account/password", {"new_password": "x"}),
        ("POST", f"{V3}/delete_devices", {"devices": []}),
    ]:
        result = hs.request(method, path, body=body, access_token=token)
        assert (result.status, result.json()["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    bad_kind = hs.request("POST", f"{V3}/register?kind=robot", body={})
    assert (bad_kind.status, bad_kind.json()["errcode"]) == (400, "M_INVALID_PARAM")


# --- registration tokens -------------------------------------------------------------------


def _admin(hs: RunningHomeserver) -> str:
    return hs.register_user("admin", admin=True).access_token


TOKENS = "/_synapse/admin/v1/registration_tokens"


def test_registration_token_admin_api(start: Starter) -> None:
    hs = start()
    admin = _admin(hs)
    user = hs.register_user("plain").access_token
    forbidden = hs.request("GET", TOKENS, access_token=user)
    assert (forbidden.status, forbidden.json()["errcode"]) == (403, "M_FORBIDDEN")
    assert hs.request("GET", TOKENS).status == 401

    created = hs.request(
        "POST",
        f"{TOKENS}/new",
        body={"token": "abc.DEF_1~-", "uses_allowed": 3},
        access_token=admin,
    )
    assert created.status == 200, created.body
    assert created.json() == {
        "token": "abc.DEF_1~-",
        "uses_allowed": 3,
        "pending": 0,
        "completed": 0,
        "expiry_time": None,
    }
    generated = hs.request("POST", f"{TOKENS}/new", body={"length": 20}, access_token=admin).json()
    assert len(generated["token"]) == 20 and generated["uses_allowed"] is None
    default = hs.request("POST", f"{TOKENS}/new", body={}, access_token=admin).json()
    assert len(default["token"]) == 16

    listed = hs.request("GET", TOKENS, access_token=admin).json()["registration_tokens"]
    assert {t["token"] for t in listed} == {"abc.DEF_1~-", generated["token"], default["token"]}
    got = hs.request("GET", f"{TOKENS}/abc.DEF_1~-", access_token=admin)
    assert got.json()["uses_allowed"] == 3

    future = int(time.time() * 1000) + 3_600_000
    updated = hs.request(
        "PUT",
        f"{TOKENS}/abc.DEF_1~-",
        body={"uses_allowed": None, "expiry_time": future},
        access_token=admin,
    )
    assert updated.json()["uses_allowed"] is None and updated.json()["expiry_time"] == future
    partial = hs.request(
        "PUT", f"{TOKENS}/abc.DEF_1~-", body={"uses_allowed": 0}, access_token=admin
    )
    assert partial.json()["uses_allowed"] == 0 and partial.json()["expiry_time"] == future
    invalid = hs.request("GET", f"{TOKENS}?valid=false", access_token=admin).json()
    assert [t["token"] for t in invalid["registration_tokens"]] == ["abc.DEF_1~-"]
    valid = hs.request("GET", f"{TOKENS}?valid=true", access_token=admin).json()
    assert "abc.DEF_1~-" not in {t["token"] for t in valid["registration_tokens"]}

    deleted = hs.request("DELETE", f"{TOKENS}/abc.DEF_1~-", access_token=admin)
    assert (deleted.status, deleted.json()) == (200, {})
    for method in ("GET", "DELETE"):
        missing = hs.request(method, f"{TOKENS}/abc.DEF_1~-", access_token=admin)
        assert (missing.status, missing.json()["errcode"]) == (404, "M_NOT_FOUND")
    missing = hs.request("PUT", f"{TOKENS}/nope", body={}, access_token=admin)
    assert (missing.status, missing.json()["errcode"]) == (404, "M_NOT_FOUND")


@pytest.mark.parametrize(
    "body",
    [
        {"token": "has space"},
        {"token": "x" * 65},
        {"token": 5},
        {"uses_allowed": -1},
        {"uses_allowed": "3"},
        {"expiry_time": 1},
        {"expiry_time": "soon"},
        {"length": 0},
        {"length": 65},
        {"length": True},
    ],
)
def test_registration_token_create_bad_input(start: Starter, body: dict[str, Any]) -> None:
    hs = start()
    admin = _admin(hs)
    result = hs.request("POST", f"{TOKENS}/new", body=body, access_token=admin)
    assert (result.status, result.json()["errcode"]) == (400, "M_INVALID_PARAM"), result.body


def test_registration_token_duplicate(start: Starter) -> None:
    hs = start()
    admin = _admin(hs)
    assert (
        hs.request("POST", f"{TOKENS}/new", body={"token": "t"}, access_token=admin).status == 200
    )
    again = hs.request("POST", f"{TOKENS}/new", body={"token": "t"}, access_token=admin)
    assert (again.status, again.json()["errcode"]) == (400, "M_INVALID_PARAM")


def _token_register(hs: RunningHomeserver, username: str, token: str) -> Any:
    first = hs.request("POST", f"{V3}/register", body={"username": username, "password": "pw"})
    assert first.status == 401, first.body
    body = first.json()
    assert body["flows"] == [{"stages": ["m.login.registration_token", "m.login.dummy"]}]
    session = body["session"]
    stage = hs.request(
        "POST",
        f"{V3}/register",
        body={"auth": {"type": "m.login.registration_token", "token": token, "session": session}},
    )
    if stage.status != 401 or "errcode" in stage.json():
        return stage
    assert stage.json()["completed"] == ["m.login.registration_token"]
    return hs.request(
        "POST", f"{V3}/register", body={"auth": {"type": "m.login.dummy", "session": session}}
    )


def test_registration_with_tokens(start: Starter) -> None:
    hs = start(
        enable_registration=True,
        registration_requires_token=True,
        rc_registration_token_validity={"per_second": 100, "burst_count": 100},
    )
    admin = _admin(hs)
    hs.request(
        "POST", f"{TOKENS}/new", body={"token": "once", "uses_allowed": 1}, access_token=admin
    )
    validity = "/_matrix/client/v1/register/m.login.registration_token/validity"
    assert hs.request("GET", f"{validity}?token=once").json() == {"valid": True}
    assert hs.request("GET", f"{validity}?token=unknown").json() == {"valid": False}
    missing = hs.request("GET", validity)
    assert (missing.status, missing.json()["errcode"]) == (400, "M_MISSING_PARAM")

    # A wrong token fails its stage.
    wrong = _token_register(hs, "u0", "unknown")
    assert wrong.status == 401
    assert wrong.json()["errcode"] == "M_FORBIDDEN"
    assert "completed" not in wrong.json()

    # Validated but not used yet: pending, and so not valid for anyone else.
    first = hs.request("POST", f"{V3}/register", body={"username": "u1", "password": "pw"})
    session = first.json()["session"]
    stage = hs.request(
        "POST",
        f"{V3}/register",
        body={"auth": {"type": "m.login.registration_token", "token": "once", "session": session}},
    )
    assert stage.status == 401 and stage.json()["completed"] == ["m.login.registration_token"]
    info = hs.request("GET", f"{TOKENS}/once", access_token=admin).json()
    assert (info["pending"], info["completed"]) == (1, 0)
    assert hs.request("GET", f"{validity}?token=once").json() == {"valid": False}
    other = _token_register(hs, "u2", "once")
    assert (other.status, other.json()["errcode"]) == (401, "M_FORBIDDEN")

    done = hs.request(
        "POST", f"{V3}/register", body={"auth": {"type": "m.login.dummy", "session": session}}
    )
    assert done.status == 200, done.body
    assert done.json()["user_id"] == "@u1:hs.test"
    info = hs.request("GET", f"{TOKENS}/once", access_token=admin).json()
    assert (info["pending"], info["completed"]) == (0, 1)
    exhausted = _token_register(hs, "u3", "once")
    assert (exhausted.status, exhausted.json()["errcode"]) == (401, "M_FORBIDDEN")

    # An expired token.
    soon = int(time.time() * 1000) + 500
    hs.request(
        "POST", f"{TOKENS}/new", body={"token": "brief", "expiry_time": soon}, access_token=admin
    )
    assert hs.request("GET", f"{validity}?token=brief").json() == {"valid": True}
    time.sleep(0.6)
    assert hs.request("GET", f"{validity}?token=brief").json() == {"valid": False}
    expired = _token_register(hs, "u4", "brief")
    assert (expired.status, expired.json()["errcode"]) == (401, "M_FORBIDDEN")

    # An unlimited token registers several users.
    hs.request("POST", f"{TOKENS}/new", body={"token": "many"}, access_token=admin)
    for name in ("m1", "m2"):
        assert _token_register(hs, name, "many").status == 200
    assert hs.request("GET", f"{TOKENS}/many", access_token=admin).json()["completed"] == 2


def test_token_validity_when_tokens_not_required(start: Starter) -> None:
    hs = start(**OPEN)
    result = hs.request(
        "GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=x"
    )
    assert (result.status, result.json()["errcode"]) == (403, "M_FORBIDDEN")


def test_token_validity_rate_limit(start: Starter) -> None:
    hs = start(
        enable_registration=True,
        registration_requires_token=True,
        rc_registration_token_validity={"per_second": 0.001, "burst_count": 2},
    )
    path = "/_matrix/client/v1/register/m.login.registration_token/validity?token=x"
    assert [hs.request("GET", path).status for _ in range(3)] == [200, 200, 429]


# --- shared-secret registration --------------------------------------------------------------


def _mac(nonce: str, user: str, password: str, admin: bool, user_type: str | None = None) -> str:
    mac = hmac.new(TEST_SHARED_SECRET.encode(), digestmod=hashlib.sha1)
    parts = [nonce, user, password, "admin" if admin else "notadmin"] + (
        [user_type] if user_type else []
    )
    mac.update("\0".join(parts).encode())
    return mac.hexdigest()


ADMIN_REGISTER = "/_synapse/admin/v1/register"


def test_shared_secret_registration(start: Starter) -> None:
    hs = start()
    nonce = hs.request("GET", ADMIN_REGISTER).json()["nonce"]
    body = {
        "nonce": nonce,
        "username": "boss",
        "password": "pw",
        "admin": True,
        "user_type": "bot",
        "displayname": "The Boss",
        "mac": _mac(nonce, "boss", "pw", True, "bot"),
    }
    result = hs.request("POST", ADMIN_REGISTER, body=body)
    assert result.status == 200, result.body
    data = result.json()
    assert data["user_id"] == "@boss:hs.test" and data["home_server"] == "hs.test"
    assert data["access_token"] and data["device_id"]
    assert hs.request("GET", f"{V3}/profile/@boss:hs.test/displayname").json() == {
        "displayname": "The Boss"
    }
    # An admin: the admin API answers.
    assert hs.request("GET", TOKENS, access_token=data["access_token"]).status == 200
    # The nonce was used up.
    again = hs.request("POST", ADMIN_REGISTER, body={**body, "username": "boss2"})
    assert (again.status, again.json()["errcode"]) == (400, "M_UNKNOWN")


def test_shared_secret_wrong_mac_burns_the_nonce(start: Starter) -> None:
    hs = start()
    nonce = hs.request("GET", ADMIN_REGISTER).json()["nonce"]
    body = {"nonce": nonce, "username": "eve", "password": "pw", "admin": False}
    wrong = hs.request("POST", ADMIN_REGISTER, body={**body, "mac": _mac(nonce, "eve", "pw", True)})
    assert (wrong.status, wrong.json()["errcode"]) == (403, "M_FORBIDDEN")
    right = hs.request(
        "POST", ADMIN_REGISTER, body={**body, "mac": _mac(nonce, "eve", "pw", False)}
    )
    assert (right.status, right.json()["errcode"]) == (400, "M_UNKNOWN")
    # Not an admin when registered as notadmin.
    nonce = hs.request("GET", ADMIN_REGISTER).json()["nonce"]
    body = {
        "nonce": nonce,
        "username": "eve",
        "password": "pw",
        "mac": _mac(nonce, "eve", "pw", False),
    }
    created = hs.request("POST", ADMIN_REGISTER, body=body)
    assert created.status == 200
    result = hs.request("GET", TOKENS, access_token=created.json()["access_token"])
    assert result.status == 403


@pytest.mark.parametrize(
    ("change", "status", "errcode"),
    [
        ({"username": "bad name"}, 400, "M_INVALID_USERNAME"),
        ({"username": None}, 400, "M_INVALID_PARAM"),
        ({"password": None}, 400, "M_INVALID_PARAM"),
        ({"admin": "yes"}, 400, "M_INVALID_PARAM"),
        ({"user_type": "wizard"}, 400, "M_INVALID_PARAM"),
        ({"mac": None}, 400, "M_MISSING_PARAM"),
        ({"nonce": None}, 400, "M_MISSING_PARAM"),
    ],
)
def test_shared_secret_bad_input(
    start: Starter, change: dict[str, Any], status: int, errcode: str
) -> None:
    hs = start()
    nonce = hs.request("GET", ADMIN_REGISTER).json()["nonce"]
    body: dict[str, Any] = {"nonce": nonce, "username": "zed", "password": "pw", "admin": False}
    body["mac"] = _mac(nonce, str(change.get("username", "zed")), "pw", False)
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    result = hs.request("POST", ADMIN_REGISTER, body=body)
    assert (result.status, result.json()["errcode"]) == (status, errcode), result.body


def test_shared_secret_disabled(start: Starter) -> None:
    hs = start(registration_shared_secret=None)
    result = hs.request("GET", ADMIN_REGISTER)
    assert result.status == 400
