"""``GET /capabilities`` over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from tests.integration.harness import make_config, start_homeserver
from tests.integration.test_directory_api import V3, assert_error, register


def test_capabilities(tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any) -> None:
    config = make_config(
        tmp_path,
        db_config,
        default_room_version="11",
        enable_set_avatar_url=False,
    )
    running = start_homeserver(config, reactor_thread, run_sync)
    try:
        alice = register(running, "alice")
        result = alice.request("GET", "/capabilities")
        assert result.status == 200
        capabilities = result.json()["capabilities"]
        assert capabilities["m.room_versions"] == {
            "default": "11",
            "available": {version: "stable" for version in KNOWN_ROOM_VERSIONS},
        }
        assert set(capabilities["m.room_versions"]["available"]) >= {str(n) for n in range(1, 13)}
        assert capabilities["m.change_password"] == {"enabled": True}
        assert capabilities["m.set_displayname"] == {"enabled": True}
        assert capabilities["m.set_avatar_url"] == {"enabled": False}
        assert capabilities["m.profile_fields"] == {"enabled": True, "disallowed": ["avatar_url"]}
        assert capabilities["m.3pid_changes"] == {"enabled": False}
        assert capabilities["m.get_login_token"] == {"enabled": False}
        legacy = running.request(
            "GET",
            "/_matrix/client/r0/capabilities",
            headers={"Authorization": f"Bearer {alice.token}"},
        )
        assert legacy.json()["capabilities"] == capabilities

        assert_error(running.request("GET", V3 + "/capabilities"), 401, "M_MISSING_TOKEN")
        bad_token = running.request(
            "GET", V3 + "/capabilities", headers={"Authorization": "Bearer nope"}
        )
        assert_error(bad_token, 401, "M_UNKNOWN_TOKEN")
        assert_error(alice.request("POST", "/capabilities", {}), 405, "M_UNRECOGNIZED")
    finally:
        running.stop()


def test_capabilities_defaults(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    config = make_config(
        tmp_path,
        db_config,
    )
    running = start_homeserver(config, reactor_thread, run_sync)
    try:
        capabilities = register(running, "bob").request("GET", "/capabilities").json()
        capabilities = capabilities["capabilities"]
        assert capabilities["m.room_versions"]["default"] == "12"
        assert capabilities["m.set_avatar_url"] == {"enabled": True}
        assert capabilities["m.profile_fields"] == {"enabled": True}
    finally:
        running.stop()
