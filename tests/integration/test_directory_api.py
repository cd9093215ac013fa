"""Room aliases and the room directory over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.handlers.event_creation import EventSpec
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from tests.integration.harness import HttpResult, RunningHomeserver, make_config, start_homeserver

V3 = "/_matrix/client/v3"


class Client:
    def __init__(self, hs: RunningHomeserver, user_id: str, token: str) -> None:
        self.hs = hs
        self.user_id = user_id
        self.token = token

    def request(self, method: str, path: str, body: Any = None) -> HttpResult:
        headers = {"Authorization": f"Bearer {self.token}"}
        payload = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        return self.hs.request(method, V3 + path, body=payload, headers=headers)


def register(hs: RunningHomeserver, localpart: str, *, admin: bool = False) -> Client:
    user = hs.register_user(localpart, admin=admin)
    return Client(hs, user.user_id, user.access_token)


def create_room(
    hs: RunningHomeserver,
    creator: str,
    *,
    members: tuple[str, ...] = (),
    join_rule: str = "public",
    history_visibility: str = "shared",
    extra: tuple[EventSpec, ...] = (),
    is_public: bool = False,
) -> str:
    """A room made in-process, so these tests do not depend on /createRoom."""
    homeserver = hs.homeserver
    version = KNOWN_ROOM_VERSIONS["10"]

    async def make() -> str:
        specs = [
            EventSpec("m.room.create", creator, {"room_version": "10", "creator": creator}, ""),
            EventSpec("m.room.member", creator, {"membership": "join"}, creator),
            EventSpec("m.room.power_levels", creator, {"users": {creator: 100}}, ""),
            EventSpec("m.room.join_rules", creator, {"join_rule": join_rule}, ""),
            EventSpec(
                "m.room.history_visibility",
                creator,
                {"history_visibility": history_visibility},
                "",
            ),
            *extra,
        ]
        room_id, _ = await homeserver.event_creator.create_room(
            version, creator, specs, is_public=is_public
        )
        for member in members:
            await homeserver.event_creator.send(
                room_id, EventSpec("m.room.member", member, {"membership": "join"}, member)
            )
        return room_id

    room_id: str = hs.run_sync(make())
    return room_id


def send_state(hs: RunningHomeserver, room_id: str, spec: EventSpec) -> None:
    hs.run_sync(hs.homeserver.event_creator.send(room_id, spec))


def alias_path(alias: str) -> str:
    return "/directory/room/" + quote(alias, safe="")


def assert_error(result: HttpResult, status: int, errcode: str) -> None:
    assert result.status == status, (result.status, result.body)
    assert result.json()["errcode"] == errcode, result.body


@pytest.fixture
def homeserver(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    running = start_homeserver(make_config(tmp_path, db_config), reactor_thread, run_sync)
    yield running
    running.stop()


def test_alias_create_get_list_delete(homeserver: RunningHomeserver) -> None:
    alice = register(homeserver, "alice")
    bob = register(homeserver, "bob")
    room_id = create_room(homeserver, alice.user_id)
    alias = "#lounge:hs.test"

    assert alice.request("PUT", alias_path(alias), {"room_id": room_id}).json() == {}
    taken = alice.request("PUT", alias_path(alias), {"room_id": room_id})
    assert_error(taken, 409, "M_UNKNOWN")

    # Resolving needs no access token.
    got = homeserver.request("GET", V3 + alias_path(alias))
    assert got.status == 200
    assert got.json() == {"room_id": room_id, "servers": ["hs.test"]}
    legacy = homeserver.request("GET", "/_matrix/client/r0" + alias_path(alias))
    assert legacy.json()["room_id"] == room_id

    unicode_alias = "#☕café:hs.test"
    assert alice.request("PUT", alias_path(unicode_alias), {"room_id": room_id}).status == 200
    assert homeserver.request("GET", V3 + alias_path(unicode_alias)).json()["room_id"] == room_id

    listed = alice.request("GET", f"/rooms/{quote(room_id)}/aliases")
    assert listed.status == 200
    assert listed.json() == {"aliases": [alias, unicode_alias]}
    # Only members (or anyone, for a world-readable room) may list the aliases.
    assert_error(bob.request("GET", f"/rooms/{quote(room_id)}/aliases"), 403, "M_FORBIDDEN")
    assert_error(bob.request("GET", "/rooms/!unknown:hs.test/aliases"), 403, "M_FORBIDDEN")

    # Bob may not delete Alice's alias: not its creator, and not even in the room.
    assert_error(bob.request("DELETE", alias_path(alias)), 403, "M_FORBIDDEN")
    assert alice.request("DELETE", alias_path(alias)).json() == {}
    assert_error(homeserver.request("GET", V3 + alias_path(alias)), 404, "M_NOT_FOUND")
    assert_error(alice.request("DELETE", alias_path(alias)), 404, "M_NOT_FOUND")
    assert alice.request("GET", f"/rooms/{quote(room_id)}/aliases").json() == {
        "aliases": [unicode_alias]
    }


def test_alias_bad_input(homeserver: RunningHomeserver) -> None:
    alice = register(homeserver, "alice")
    room_id = create_room(homeserver, alice.user_id)

    for bad in ("lounge", "#lounge", "#:hs.test", "#two words:hs.test", "#a:b:hs.test"):
        assert_error(
            alice.request("PUT", alias_path(bad), {"room_id": room_id}), 400, "M_INVALID_PARAM"
        )
    assert_error(
        alice.request("PUT", alias_path("#x:elsewhere.test"), {"room_id": room_id}),
        400,
        "M_INVALID_PARAM",
    )
    assert_error(
        alice.request("PUT", alias_path("#long" + "x" * 260 + ":hs.test"), {"room_id": room_id}),
        400,
        "M_INVALID_PARAM",
    )
    assert_error(alice.request("PUT", alias_path("#ok:hs.test"), {}), 400, "M_MISSING_PARAM")
    for wrong in (12, None, ["!a:hs.test"], "not-a-room-id"):
        assert_error(
            alice.request("PUT", alias_path("#ok:hs.test"), {"room_id": wrong}),
            400,
            "M_INVALID_PARAM",
        )
    assert_error(alice.request("PUT", alias_path("#ok:hs.test"), b"{nope"), 400, "M_NOT_JSON")
    assert_error(alice.request("PUT", alias_path("#ok:hs.test"), b"[]"), 400, "M_BAD_JSON")
    assert_error(
        alice.request("PUT", alias_path("#ok:hs.test"), {"room_id": "!nowhere:hs.test"}),
        404,
        "M_NOT_FOUND",
    )
    assert_error(homeserver.request("GET", V3 + alias_path("nohash")), 400, "M_INVALID_PARAM")
    # A remote alias whose server cannot be reached: 502, as Synapse.
    assert_error(
        homeserver.request("GET", V3 + alias_path("#x:elsewhere.test")), 502, "M_UNKNOWN"
    )
    # Writing needs an access token.
    no_token = homeserver.request("PUT", V3 + alias_path("#ok:hs.test"), body={"room_id": room_id})
    assert_error(no_token, 401, "M_MISSING_TOKEN")
    assert_error(
        homeserver.request("DELETE", V3 + alias_path("#ok:hs.test")), 401, "M_MISSING_TOKEN"
    )


def test_alias_membership_and_power(homeserver: RunningHomeserver) -> None:
    alice = register(homeserver, "alice")
    bob = register(homeserver, "bob")
    carol = register(homeserver, "carol")
    room_id = create_room(homeserver, alice.user_id, members=(bob.user_id,))

    # Carol is not in the room: she may not create an alias for it.
    assert_error(
        carol.request("PUT", alias_path("#carols:hs.test"), {"room_id": room_id}),
        403,
        "M_FORBIDDEN",
    )
    # Regular members may add aliases and delete their own, with no power.
    assert bob.request("PUT", alias_path("#bobs:hs.test"), {"room_id": room_id}).status == 200
    assert bob.request("PUT", alias_path("#bobs2:hs.test"), {"room_id": room_id}).status == 200
    assert bob.request("DELETE", alias_path("#bobs:hs.test")).status == 200
    # ... but not others'; a user with enough power may delete anyone's.
    assert alice.request("PUT", alias_path("#alices:hs.test"), {"room_id": room_id}).status == 200
    assert_error(bob.request("DELETE", alias_path("#alices:hs.test")), 403, "M_FORBIDDEN")
    assert alice.request("DELETE", alias_path("#bobs2:hs.test")).status == 200

    # The alias creator may delete the canonical alias with no power; the event stays.
    assert bob.request("PUT", alias_path("#canon:hs.test"), {"room_id": room_id}).status == 200
    send_state(
        homeserver,
        room_id,
        EventSpec(
            "m.room.canonical_alias",
            alice.user_id,
            {"alias": "#canon:hs.test", "alt_aliases": ["#alices:hs.test"]},
            "",
        ),
    )
    assert bob.request("DELETE", alias_path("#canon:hs.test")).status == 200
    # Alice (power 100) deleting an alias takes it out of the canonical alias event.
    assert alice.request("DELETE", alias_path("#alices:hs.test")).status == 200
    canonical = homeserver.run_sync(
        homeserver.homeserver.event_store.get_current_state_event(room_id, "m.room.canonical_alias")
    )
    assert canonical.content == {"alias": "#canon:hs.test"}

    # A server admin may do all of it without being in the room.
    root = register(homeserver, "root", admin=True)
    assert root.request("PUT", alias_path("#roots:hs.test"), {"room_id": room_id}).status == 200
    assert root.request("GET", f"/rooms/{quote(room_id)}/aliases").status == 200
    assert root.request("DELETE", alias_path("#canon:hs.test")).status == 404
    assert alice.request("PUT", alias_path("#gone:hs.test"), {"room_id": room_id}).status == 200
    assert root.request("DELETE", alias_path("#gone:hs.test")).status == 200
    visibility = f"/directory/list/room/{quote(room_id)}"
    assert root.request("PUT", visibility, {"visibility": "public"}).status == 200

    # A world-readable room's aliases are visible to anyone with an access token.
    readable = create_room(homeserver, alice.user_id, history_visibility="world_readable")
    assert alice.request("PUT", alias_path("#open:hs.test"), {"room_id": readable}).status == 200
    assert carol.request("GET", f"/rooms/{quote(readable)}/aliases").json() == {
        "aliases": ["#open:hs.test"]
    }


def test_room_visibility(homeserver: RunningHomeserver) -> None:
    alice = register(homeserver, "alice")
    bob = register(homeserver, "bob")
    carol = register(homeserver, "carol")
    room_id = create_room(homeserver, alice.user_id, members=(bob.user_id,))
    path = f"/directory/list/room/{quote(room_id)}"

    assert homeserver.request("GET", V3 + path).json() == {"visibility": "private"}
    assert alice.request("PUT", path, {"visibility": "public"}).json() == {}
    assert homeserver.request("GET", V3 + path).json() == {"visibility": "public"}
    assert alice.request("PUT", path, {"visibility": "private"}).status == 200
    assert homeserver.request("GET", V3 + path).json() == {"visibility": "private"}
    # A missing visibility publishes, as Synapse.
    assert alice.request("PUT", path, {}).status == 200
    assert homeserver.request("GET", V3 + path).json() == {"visibility": "public"}

    # Bob is a member without power; Carol is not in the room.
    assert_error(bob.request("PUT", path, {"visibility": "private"}), 403, "M_FORBIDDEN")
    assert_error(carol.request("PUT", path, {"visibility": "private"}), 403, "M_FORBIDDEN")
    for wrong in ("secret", 1, None, ["public"]):
        assert_error(alice.request("PUT", path, {"visibility": wrong}), 400, "M_INVALID_PARAM")
    unknown = "/directory/list/room/" + quote("!nowhere:hs.test")
    assert_error(homeserver.request("GET", V3 + unknown), 404, "M_NOT_FOUND")
    assert_error(alice.request("PUT", unknown, {"visibility": "public"}), 404, "M_NOT_FOUND")
    assert_error(
        homeserver.request("PUT", V3 + path, body={"visibility": "public"}), 401, "M_MISSING_TOKEN"
    )


def test_public_rooms(homeserver: RunningHomeserver) -> None:
    alice = register(homeserver, "alice")
    bob = register(homeserver, "bob")
    big = create_room(
        homeserver,
        alice.user_id,
        members=(bob.user_id,),
        is_public=True,
        extra=(
            EventSpec("m.room.name", "@alice:hs.test", {"name": "The Big Room"}, ""),
            EventSpec("m.room.topic", "@alice:hs.test", {"topic": "Everything"}, ""),
            EventSpec("m.room.avatar", "@alice:hs.test", {"url": "mxc://hs.test/abc"}, ""),
            EventSpec("m.room.guest_access", "@alice:hs.test", {"guest_access": "can_join"}, ""),
        ),
    )
    alice.request("PUT", alias_path("#big:hs.test"), {"room_id": big})
    send_state(
        homeserver,
        big,
        EventSpec("m.room.canonical_alias", alice.user_id, {"alias": "#big:hs.test"}, ""),
    )
    small = create_room(
        homeserver,
        alice.user_id,
        extra=(EventSpec("m.room.name", "@alice:hs.test", {"name": "Small talk"}, ""),),
    )
    assert alice.request("PUT", f"/directory/list/room/{quote(small)}", {}).status == 200
    create_room(homeserver, alice.user_id)  # not published

    result = alice.request("GET", "/publicRooms")
    assert result.status == 200
    body = result.json()
    assert body["total_room_count_estimate"] == 2
    assert body["chunk"] == [
        {
            "room_id": big,
            "name": "The Big Room",
            "topic": "Everything",
            "canonical_alias": "#big:hs.test",
            "num_joined_members": 2,
            "avatar_url": "mxc://hs.test/abc",
            "world_readable": False,
            "guest_can_join": True,
            "join_rule": "public",
        },
        {
            "room_id": small,
            "name": "Small talk",
            "num_joined_members": 1,
            "world_readable": False,
            "guest_can_join": False,
            "join_rule": "public",
        },
    ]

    first = alice.request("GET", "/publicRooms?limit=1").json()
    assert [e["room_id"] for e in first["chunk"]] == [big]
    second = alice.request("GET", "/publicRooms?limit=1&since=" + first["next_batch"]).json()
    assert [e["room_id"] for e in second["chunk"]] == [small]
    assert "next_batch" not in second and "prev_batch" in second

    search = alice.request("POST", "/publicRooms", {"filter": {"generic_search_term": "small"}})
    assert [e["room_id"] for e in search.json()["chunk"]] == [small]
    by_alias = alice.request("POST", "/publicRooms", {"filter": {"generic_search_term": "#BIG"}})
    assert [e["room_id"] for e in by_alias.json()["chunk"]] == [big]
    paged = alice.request(
        "POST",
        "/publicRooms",
        {"limit": 1, "include_all_networks": False, "third_party_instance_id": "irc"},
    ).json()
    assert len(paged["chunk"]) == 1 and "next_batch" in paged
    spaces = alice.request("POST", "/publicRooms", {"filter": {"room_types": ["m.space"]}})
    assert spaces.json()["chunk"] == []
    local = alice.request("POST", "/publicRooms?server=hs.test", {})
    assert len(local.json()["chunk"]) == 2

    assert_error(alice.request("GET", "/publicRooms?limit=x"), 400, "M_INVALID_PARAM")
    assert_error(alice.request("GET", "/publicRooms?since=nonsense"), 400, "M_INVALID_PARAM")
    assert_error(
        alice.request("GET", "/publicRooms?include_all_networks=maybe"), 400, "M_INVALID_PARAM"
    )
    # A server that cannot be reached (federation asks it): 502, as for remote aliases.
    assert_error(alice.request("GET", "/publicRooms?server=elsewhere.test"), 502, "M_UNKNOWN")
    for bad_body in (
        {"limit": "10"},
        {"limit": True},
        {"since": 5},
        {"filter": "small"},
        {"filter": {"generic_search_term": 3}},
        {"filter": {"room_types": "m.space"}},
        {"filter": {"room_types": [1]}},
        {"include_all_networks": "yes"},
        {"third_party_instance_id": 7},
    ):
        assert_error(alice.request("POST", "/publicRooms", bad_body), 400, "M_INVALID_PARAM")
    assert_error(alice.request("POST", "/publicRooms", b"nope"), 400, "M_NOT_JSON")
    # allow_public_rooms_without_auth is off by default.
    assert_error(homeserver.request("GET", V3 + "/publicRooms"), 401, "M_MISSING_TOKEN")
    assert_error(homeserver.request("POST", V3 + "/publicRooms", body={}), 401, "M_MISSING_TOKEN")


def test_public_rooms_without_auth(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    config = make_config(tmp_path, db_config, allow_public_rooms_without_auth=True)
    running = start_homeserver(config, reactor_thread, run_sync)
    try:
        result = running.request("GET", V3 + "/publicRooms")
        assert result.status == 200
        assert result.json() == {"chunk": [], "total_room_count_estimate": 0}
        assert_error(running.request("POST", V3 + "/publicRooms", body={}), 401, "M_MISSING_TOKEN")
    finally:
        running.stop()
