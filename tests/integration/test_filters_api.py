"""POST /user/{userId}/filter and GET /user/{userId}/filter/{filterId} over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from storage.engine import DatabaseConfig
from tests.integration.harness import RunningHomeserver, make_config, start_homeserver

CLIENT = "/_matrix/client/v3"


@pytest.fixture
def server(tmp_path: Path, db_config: DatabaseConfig, run_sync: Any) -> Iterator[RunningHomeserver]:
    from twisted.internet import reactor

    running = start_homeserver(make_config(tmp_path, db_config), reactor, run_sync)
    try:
        yield running
    finally:
        running.stop()


def filter_path(user_id: str, filter_id: str | None = None) -> str:
    path = f"{CLIENT}/user/{quote(user_id)}/filter"
    return path if filter_id is None else f"{path}/{quote(filter_id)}"


FILTER = {
    "event_fields": ["type", "content"],
    "room": {
        "timeline": {"limit": 10, "types": ["m.room.message"]},
        "state": {"lazy_load_members": True},
        "org.example.extension": True,
    },
    "presence": {"not_types": ["*"]},
}


def test_create_and_download(server: RunningHomeserver) -> None:
    alice = server.register_user("alice")
    created = server.request(
        "POST", filter_path(alice.user_id), body=FILTER, access_token=alice.access_token
    )
    assert created.status == 200, created.body
    filter_id = created.json()["filter_id"]
    assert isinstance(filter_id, str) and filter_id
    fetched = server.request(
        "GET", filter_path(alice.user_id, filter_id), access_token=alice.access_token
    )
    assert fetched.status == 200 and fetched.json() == FILTER
    # The same filter again gets the same ID; a different one a new ID.
    again = server.request(
        "POST", filter_path(alice.user_id), body=dict(FILTER), access_token=alice.access_token
    )
    assert again.json()["filter_id"] == filter_id
    other = server.request(
        "POST", filter_path(alice.user_id), body={}, access_token=alice.access_token
    )
    assert other.status == 200 and other.json()["filter_id"] != filter_id
    # Filter IDs are per user: Bob's first is 0, and Alice's 1 is not his.
    assert (filter_id, other.json()["filter_id"]) == ("0", "1")
    bob = server.register_user("bob")
    bobs = server.request("POST", filter_path(bob.user_id), body={}, access_token=bob.access_token)
    assert bobs.json()["filter_id"] == "0"
    not_alices = server.request("GET", filter_path(bob.user_id, "1"), access_token=bob.access_token)
    assert (not_alices.status, not_alices.json()["errcode"]) == (404, "M_NOT_FOUND")


def test_errors(server: RunningHomeserver) -> None:
    alice = server.register_user("alice")
    bob = server.register_user("bob")
    token = alice.access_token
    for body in (
        {"room": {"timeline": {"limit": "ten"}}},
        {"room": {"state": {"lazy_load_members": "true"}}},
        {"event_format": "xml"},
        {"presence": {"senders": ["nobody"]}},
        {"room": {"rooms": "!a:hs.test"}},
    ):
        result = server.request("POST", filter_path(alice.user_id), body=body, access_token=token)
        assert (result.status, result.json()["errcode"]) == (400, "M_BAD_JSON"), body
    not_json = server.request("POST", filter_path(alice.user_id), body=b"{nope", access_token=token)
    assert (not_json.status, not_json.json()["errcode"]) == (400, "M_NOT_JSON")
    for user_id in (bob.user_id, "@alice:elsewhere.test"):
        result = server.request("POST", filter_path(user_id), body={}, access_token=token)
        assert (result.status, result.json()["errcode"]) == (403, "M_FORBIDDEN")
    created = server.request("POST", filter_path(alice.user_id), body={}, access_token=token)
    filter_id = created.json()["filter_id"]
    others = server.request(
        "GET", filter_path(alice.user_id, filter_id), access_token=bob.access_token
    )
    assert (others.status, others.json()["errcode"]) == (403, "M_FORBIDDEN")
    for missing in ("12345", "abc", "-1"):
        result = server.request("GET", filter_path(alice.user_id, missing), access_token=token)
        assert (result.status, result.json()["errcode"]) == (404, "M_NOT_FOUND"), missing
    anonymous = server.request("POST", filter_path(alice.user_id), body={})
    assert anonymous.status == 401
