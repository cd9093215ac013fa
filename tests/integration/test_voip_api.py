"""``GET /voip/turnServer`` over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import pytest

from homeserver.config import parse_config
from homeserver.config.reader import ConfigError
from tests.integration.harness import RunningHomeserver, make_config, start_homeserver
from tests.integration.test_directory_api import V3, assert_error, register

URIS = ["turn:turn.hs.test:3478?transport=udp", "turns:turn.hs.test:5349?transport=tcp"]


def serve(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any, **turn: Any
) -> RunningHomeserver:
    config = make_config(
        tmp_path,
        db_config,
        **turn,
    )
    return start_homeserver(config, reactor_thread, run_sync)


def test_shared_secret(tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any) -> None:
    running = serve(
        tmp_path,
        db_config,
        reactor_thread,
        run_sync,
        turn_uris=URIS,
        turn_shared_secret="s3cret",
        turn_user_lifetime="2h",
    )
    try:
        alice = register(running, "alice")
        before = int(time.time())
        result = alice.request("GET", "/voip/turnServer")
        after = int(time.time())
        assert result.status == 200
        body = result.json()
        assert body["uris"] == URIS
        assert body["ttl"] == 7200
        expiry, user_id = body["username"].split(":", 1)
        assert user_id == "@alice:hs.test"
        assert before + 7200 <= int(expiry) <= after + 7200
        mac = hmac.new(b"s3cret", body["username"].encode(), hashlib.sha1).digest()
        assert body["password"] == base64.b64encode(mac).decode()
        assert_error(running.request("GET", V3 + "/voip/turnServer"), 401, "M_MISSING_TOKEN")
    finally:
        running.stop()


def test_static_credentials_and_secret_file(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    running = serve(
        tmp_path,
        db_config,
        reactor_thread,
        run_sync,
        turn_uris=URIS[:1],
        turn_username="turnuser",
        turn_password="turnpass",
    )
    try:
        body = register(running, "alice").request("GET", "/voip/turnServer").json()
        assert body == {
            "username": "turnuser",
            "password": "turnpass",
            "ttl": 3600,
            "uris": URIS[:1],
        }
    finally:
        running.stop()

    (tmp_path / "turn.secret").write_text("from-file\n")
    config = make_config(tmp_path, db_config, turn_uris=URIS, turn_shared_secret_path="turn.secret")
    assert config.turn.shared_secret == "from-file"


def test_no_turn_configured(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    # No URIs, or URIs without any credentials: an empty object, as Synapse.
    running = serve(tmp_path, db_config, reactor_thread, run_sync, turn_shared_secret="s")
    try:
        assert register(running, "alice").request("GET", "/voip/turnServer").json() == {}
    finally:
        running.stop()


def test_turn_config_errors(tmp_path: Path, db_config: Any) -> None:
    base = make_config(tmp_path, db_config)
    data = {"server_name": "hs.test", "signing_key_path": str(base.signing_key_path)}
    for extra, key in (
        ({"turn_uris": "turn:x"}, "turn_uris"),
        ({"turn_user_lifetime": "soon"}, "turn_user_lifetime"),
        ({"turn_allow_guests": "yes"}, "turn_allow_guests"),
        ({"turn_shared_secret": "a", "turn_shared_secret_path": "b"}, "turn_shared_secret_path"),
        ({"turn_shared_secret_path": "missing.secret"}, "turn_shared_secret_path"),
        ({"require_membership_for_aliases": "no"}, "require_membership_for_aliases"),
        ({"enable_room_list_search": 1}, "enable_room_list_search"),
    ):
        with pytest.raises(ConfigError) as raised:
            parse_config({**data, **extra}, tmp_path)
        assert raised.value.key == key
