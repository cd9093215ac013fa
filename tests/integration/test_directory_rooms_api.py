"""Aliases through the rooms endpoints over real HTTP, on SQLite and PostgreSQL:
/createRoom's room_alias_name, /join/{roomAlias}, m.room.canonical_alias checks, and a
new public room in /publicRooms."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.harness import RunningHomeserver, make_config, start_homeserver
from tests.integration.test_directory_api import V3, alias_path, assert_error, register


@pytest.fixture
def homeserver(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    running = start_homeserver(make_config(tmp_path, db_config), reactor_thread, run_sync)
    yield running
    running.stop()


def test_create_room_with_alias_join_and_list(homeserver: RunningHomeserver) -> None:
    alice = register(homeserver, "alice")
    bob = register(homeserver, "bob")
    created = alice.request(
        "POST",
        "/createRoom",
        {"room_alias_name": "town-square", "visibility": "public", "name": "Town square"},
    )
    assert created.status == 200, created.body
    room_id = created.json()["room_id"]
    alias = "#town-square:hs.test"
    assert homeserver.request("GET", V3 + alias_path(alias)).json() == {
        "room_id": room_id,
        "servers": ["hs.test"],
    }
    taken = alice.request("POST", "/createRoom", {"room_alias_name": "town-square"})
    assert_error(taken, 400, "M_ROOM_IN_USE")
    assert_error(
        alice.request("POST", "/createRoom", {"room_alias_name": "two words"}),
        400,
        "M_INVALID_PARAM",
    )

    joined = bob.request("POST", "/join/" + quote(alias, safe=""), {})
    assert joined.status == 200, joined.body
    assert joined.json()["room_id"] == room_id
    assert_error(bob.request("POST", "/join/" + quote("#nope:hs.test"), {}), 404, "M_NOT_FOUND")

    rooms = alice.request("GET", "/publicRooms").json()
    assert [entry["room_id"] for entry in rooms["chunk"]] == [room_id]
    entry = rooms["chunk"][0]
    assert entry["canonical_alias"] == alias
    assert entry["name"] == "Town square"
    assert entry["num_joined_members"] == 2


def test_canonical_alias_checks(homeserver: RunningHomeserver) -> None:
    alice = register(homeserver, "alice")
    room_id = alice.request("POST", "/createRoom", {}).json()["room_id"]
    other_room = alice.request("POST", "/createRoom", {}).json()["room_id"]
    assert alice.request("PUT", alias_path("#here:hs.test"), {"room_id": room_id}).status == 200
    assert alice.request("PUT", alias_path("#there:hs.test"), {"room_id": other_room}).status == 200
    path = f"/rooms/{quote(room_id)}/state/m.room.canonical_alias"

    ok = alice.request("PUT", path, {"alias": "#here:hs.test"})
    assert ok.status == 200, ok.body
    assert_error(alice.request("PUT", path, {"alias": "#missing:hs.test"}), 400, "M_BAD_ALIAS")
    assert_error(alice.request("PUT", path, {"alias": "#there:hs.test"}), 400, "M_BAD_ALIAS")
    assert_error(alice.request("PUT", path, {"alias": "%invalid"}), 400, "M_INVALID_PARAM")
    assert_error(
        alice.request("PUT", path, {"alias": "#here:hs.test", "alt_aliases": ["#there:hs.test"]}),
        400,
        "M_BAD_ALIAS",
    )
    # Deleting the alias takes it out of the event; setting it again is refused.
    assert alice.request("DELETE", alias_path("#here:hs.test")).status == 200
    assert alice.request("GET", path).json() == {}
    assert_error(alice.request("PUT", path, {"alias": "#here:hs.test"}), 400, "M_BAD_ALIAS")
