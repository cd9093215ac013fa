"""DirectoryHandler and DirectoryStore against a real database (SQLite and PostgreSQL):
the functions other handlers call (/createRoom, /join/{alias}, the state PUT path) and the
public room list's ordering, filters and pagination."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from signedjson.key import generate_signing_key

from homeserver.errors import MatrixError
from homeserver.handlers.directory import DirectoryHandler, PublicRoomsQuery
from homeserver.handlers.event_creation import EventCreator, EventSpec
from homeserver.notifier import Notifier
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from storage.directory import DirectoryStore
from storage.events import EventStore

ALICE = "@alice:hs.test"
BOB = "@bob:hs.test"
CAROL = "@carol:other.test"
CLOCK = [1_700_000_000_000]


def now_ms() -> int:
    CLOCK[0] += 1
    return CLOCK[0]


class World:
    def __init__(self, database: Any, **options: Any) -> None:
        self.events = EventStore(database)
        self.creator = EventCreator(
            server_name="hs.test",
            signing_key=generate_signing_key("t1"),
            store=self.events,
            notifier=Notifier(),
            now_ms=now_ms,
        )
        self.store = DirectoryStore(database, now_ms)
        self.admins: set[str] = set()

        async def is_admin(user_id: str) -> bool:
            return user_id in self.admins

        self.directory = DirectoryHandler(
            server_name="hs.test",
            store=self.store,
            event_store=self.events,
            event_creator=self.creator,
            is_server_admin=is_admin,
            **options,
        )

    async def room(
        self,
        *,
        join_rule: str = "public",
        name: str | None = None,
        topic: str | None = None,
        room_type: str | None = None,
        history_visibility: str = "shared",
        is_public: bool = True,
        members: tuple[str, ...] = (),
        version: str = "10",
    ) -> str:
        create: dict[str, Any] = {"room_version": version, "creator": ALICE}
        if room_type is not None:
            create["type"] = room_type
        specs = [
            EventSpec("m.room.create", ALICE, create, ""),
            EventSpec("m.room.member", ALICE, {"membership": "join"}, ALICE),
            EventSpec("m.room.power_levels", ALICE, {"users": {ALICE: 100}}, ""),
            EventSpec("m.room.join_rules", ALICE, {"join_rule": join_rule}, ""),
            EventSpec(
                "m.room.history_visibility",
                ALICE,
                {"history_visibility": history_visibility},
                "",
            ),
        ]
        if name is not None:
            specs.append(EventSpec("m.room.name", ALICE, {"name": name}, ""))
        if topic is not None:
            specs.append(EventSpec("m.room.topic", ALICE, {"topic": topic}, ""))
        room_id, _ = await self.creator.create_room(
            KNOWN_ROOM_VERSIONS[version], ALICE, specs, is_public=is_public
        )
        for member in members:
            await self.join(room_id, member)
        return room_id

    async def join(self, room_id: str, user_id: str) -> None:
        await self.creator.send(
            room_id, EventSpec("m.room.member", user_id, {"membership": "join"}, user_id)
        )


@pytest.fixture
def world(database: Any, run_sync: Callable[..., Any]) -> World:
    world = World(database)
    run_sync(world.events.load_positions())
    return world


def run(run_sync: Callable[..., Any], work: Coroutine[Any, Any, Any]) -> Any:
    return run_sync(work)


async def error_of(work: Coroutine[Any, Any, Any]) -> MatrixError:
    try:
        await work
    except MatrixError as e:
        return e
    raise AssertionError("expected a MatrixError")


def test_resolve_and_new_room_aliases(world: World, run_sync: Any) -> None:
    async def scenario() -> None:
        directory = world.directory
        alias = await directory.check_new_room_alias("lounge")
        assert alias == "#lounge:hs.test"
        room_id = await world.room(members=(BOB, CAROL))
        await directory.create_alias_for_new_room(alias, room_id, ALICE)
        mapping = await directory.resolve_alias("#lounge:hs.test")
        assert mapping.room_id == room_id
        # This server first, then the other servers with joined members.
        assert mapping.servers == ["hs.test", "other.test"]

        taken = await error_of(directory.check_new_room_alias("lounge"))
        assert (taken.status, taken.errcode) == (400, "M_ROOM_IN_USE")
        raced = await error_of(directory.create_alias_for_new_room(alias, room_id, BOB))
        assert (raced.status, raced.errcode) == (400, "M_ROOM_IN_USE")
        for bad in ("with space", "colon:here", "", 42, "x" * 260):
            error = await error_of(directory.check_new_room_alias(bad))
            assert (error.status, error.errcode) == (400, "M_INVALID_PARAM"), bad

        for unknown in ("#nope:hs.test", "#lounge:elsewhere.test"):
            error = await error_of(directory.resolve_alias(unknown))
            assert (error.status, error.errcode) == (404, "M_NOT_FOUND")
        for malformed in ("lounge", "#lounge", "#:hs.test", "!room:hs.test"):
            error = await error_of(directory.resolve_alias(malformed))
            assert (error.status, error.errcode) == (400, "M_INVALID_PARAM")

    run(run_sync, scenario())


def test_store_alias_round_trip(world: World, run_sync: Any) -> None:
    async def scenario() -> None:
        store = world.store
        assert await store.create_alias("#a:hs.test", "!r1:hs.test", ALICE)
        assert not await store.create_alias("#a:hs.test", "!r2:hs.test", BOB)
        assert await store.create_alias("#b:hs.test", "!r1:hs.test", None)
        record = await store.get_alias("#a:hs.test")
        assert record is not None and (record.room_id, record.creator) == ("!r1:hs.test", ALICE)
        assert await store.get_aliases_for_room("!r1:hs.test") == ["#a:hs.test", "#b:hs.test"]
        assert await store.delete_alias("#a:hs.test") == "!r1:hs.test"
        assert await store.delete_alias("#a:hs.test") is None
        assert await store.get_alias("#a:hs.test") is None
        assert await store.get_aliases_for_room("!r1:hs.test") == ["#b:hs.test"]

    run(run_sync, scenario())


def test_check_canonical_alias(world: World, run_sync: Any) -> None:
    async def scenario() -> None:
        directory = world.directory
        room_id = await world.room()
        other_room = await world.room()
        await world.store.create_alias("#here:hs.test", room_id, ALICE)
        await world.store.create_alias("#also:hs.test", room_id, ALICE)
        await world.store.create_alias("#there:hs.test", other_room, ALICE)

        await directory.check_canonical_alias(room_id, {"alias": "#here:hs.test"})
        await directory.check_canonical_alias(
            room_id, {"alias": "#here:hs.test", "alt_aliases": ["#also:hs.test"]}
        )
        await directory.check_canonical_alias(room_id, {})
        await directory.check_canonical_alias(room_id, {"alias": ""})

        cases: list[tuple[dict[str, Any], str]] = [
            ({"alias": "#missing:hs.test"}, "M_BAD_ALIAS"),
            ({"alias": "#there:hs.test"}, "M_BAD_ALIAS"),
            ({"alias": "#remote:elsewhere.test"}, "M_BAD_ALIAS"),
            ({"alt_aliases": ["#also:hs.test", "#there:hs.test"]}, "M_BAD_ALIAS"),
            ({"alias": "%not-an-alias"}, "M_INVALID_PARAM"),
            ({"alias": 12}, "M_INVALID_PARAM"),
            ({"alt_aliases": "#also:hs.test"}, "M_INVALID_PARAM"),
            ({"alt_aliases": [None]}, "M_INVALID_PARAM"),
        ]
        for content, errcode in cases:
            error = await error_of(directory.check_canonical_alias(room_id, content))
            assert (error.status, error.errcode) == (400, errcode), content

        # Aliases already in the current event are not checked again, even once deleted.
        await world.creator.send(
            room_id,
            EventSpec(
                "m.room.canonical_alias",
                ALICE,
                {"alias": "#here:hs.test", "alt_aliases": ["#also:hs.test"]},
                "",
            ),
        )
        await world.store.delete_alias("#also:hs.test")
        await directory.check_canonical_alias(
            room_id, {"alias": "#here:hs.test", "alt_aliases": ["#also:hs.test"]}
        )

    run(run_sync, scenario())


def test_delete_alias_permissions_and_canonical_update(world: World, run_sync: Any) -> None:
    async def scenario() -> None:
        directory = world.directory
        room_id = await world.room(members=(BOB,))
        await directory.create_alias(BOB, "#bobs:hs.test", room_id)
        await directory.create_alias(ALICE, "#alices:hs.test", room_id)
        await world.creator.send(
            room_id,
            EventSpec(
                "m.room.canonical_alias",
                ALICE,
                {"alias": "#alices:hs.test", "alt_aliases": ["#bobs:hs.test"]},
                "",
            ),
        )
        # Bob (power 0) may not delete Alice's alias; Alice (100) may delete Bob's.
        error = await error_of(directory.delete_alias(BOB, "#alices:hs.test"))
        assert (error.status, error.errcode) == (403, "M_FORBIDDEN")
        assert await directory.delete_alias(ALICE, "#bobs:hs.test") == room_id
        canonical = await world.events.get_current_state_event(room_id, "m.room.canonical_alias")
        assert canonical is not None and canonical.content == {"alias": "#alices:hs.test"}
        # A server admin may delete any alias.
        world.admins.add(CAROL)
        assert await directory.delete_alias(CAROL, "#alices:hs.test") == room_id
        # The admin is not in the room: the canonical alias event is left as it was.
        canonical = await world.events.get_current_state_event(room_id, "m.room.canonical_alias")
        assert canonical is not None and canonical.content == {"alias": "#alices:hs.test"}
        error = await error_of(directory.delete_alias(ALICE, "#alices:hs.test"))
        assert (error.status, error.errcode) == (404, "M_NOT_FOUND")

    run(run_sync, scenario())


def test_public_room_list_order_filters_and_pages(world: World, run_sync: Any) -> None:
    async def scenario() -> None:
        directory = world.directory
        big = await world.room(name="Big Hall", members=(BOB, CAROL))
        medium = await world.room(topic="Gardening tips", members=(BOB,))
        space = await world.room(name="A space", room_type="m.space")
        knock = await world.room(join_rule="knock", name="Knock knock")
        readable = await world.room(join_rule="invite", history_visibility="world_readable")
        await world.room(join_rule="invite", name="Invite only")  # not listable
        await world.room(is_public=False, name="Unpublished")  # not published
        small = sorted([space, knock, readable], reverse=True)

        everything = await directory.get_public_rooms(PublicRoomsQuery())
        ids = [entry["room_id"] for entry in everything["chunk"]]
        assert ids == [big, medium, *small]
        assert everything["total_room_count_estimate"] == 5
        assert "next_batch" not in everything and "prev_batch" not in everything
        first = everything["chunk"][0]
        assert first == {
            "room_id": big,
            "name": "Big Hall",
            "num_joined_members": 3,
            "world_readable": False,
            "guest_can_join": False,
            "join_rule": "public",
        }
        by_id = {entry["room_id"]: entry for entry in everything["chunk"]}
        assert by_id[space]["room_type"] == "m.space"
        assert by_id[readable]["world_readable"] is True
        assert by_id[medium]["topic"] == "Gardening tips"

        search = await directory.get_public_rooms(PublicRoomsQuery(generic_search_term="GARDEN"))
        assert [e["room_id"] for e in search["chunk"]] == [medium]
        spaces = await directory.get_public_rooms(PublicRoomsQuery(room_types=["m.space"]))
        assert [e["room_id"] for e in spaces["chunk"]] == [space]
        plain = await directory.get_public_rooms(PublicRoomsQuery(room_types=[None]))
        assert space not in [e["room_id"] for e in plain["chunk"]]
        assert len(plain["chunk"]) == 4

        # Forwards two at a time, then back again.
        pages = []
        since = None
        while True:
            page = await directory.get_public_rooms(PublicRoomsQuery(limit=2, since=since))
            pages.append(page)
            since = page.get("next_batch")
            if since is None:
                break
        assert [[e["room_id"] for e in p["chunk"]] for p in pages] == [
            [big, medium],
            small[:2],
            small[2:],
        ]
        assert "prev_batch" not in pages[0] and "prev_batch" in pages[2]
        back = await directory.get_public_rooms(
            PublicRoomsQuery(limit=2, since=pages[2]["prev_batch"])
        )
        assert [e["room_id"] for e in back["chunk"]] == small[:2]
        back2 = await directory.get_public_rooms(
            PublicRoomsQuery(limit=2, since=back["prev_batch"])
        )
        assert [e["room_id"] for e in back2["chunk"]] == [big, medium]
        assert "prev_batch" not in back2 and "next_batch" in back2

        for bad in ("!!!", "Zm9v", "eDFfIXI"):
            error = await error_of(directory.get_public_rooms(PublicRoomsQuery(since=bad)))
            assert (error.status, error.errcode) == (400, "M_INVALID_PARAM"), bad
        error = await error_of(directory.get_public_rooms(PublicRoomsQuery(limit=-1)))
        assert (error.status, error.errcode) == (400, "M_INVALID_PARAM")
        error = await error_of(
            directory.get_public_rooms(PublicRoomsQuery(server="elsewhere.test"))
        )
        assert (error.status, error.errcode) == (404, "M_NOT_FOUND")
        local = await directory.get_public_rooms(PublicRoomsQuery(server="hs.test"))
        assert len(local["chunk"]) == 5

    run(run_sync, scenario())


def test_room_list_search_disabled(database: Any, run_sync: Any) -> None:
    world = World(database, enable_room_list_search=False)

    async def scenario() -> None:
        await world.events.load_positions()
        room_id = await world.room()
        assert await world.directory.get_public_rooms(PublicRoomsQuery()) == {
            "chunk": [],
            "total_room_count_estimate": 0,
        }
        error = await error_of(world.directory.set_room_visibility(ALICE, room_id, "public"))
        assert (error.status, error.errcode) == (403, "M_FORBIDDEN")
        await world.directory.set_room_visibility(ALICE, room_id, "private")
        assert await world.directory.get_room_visibility(room_id) == "private"

    run(run_sync, scenario())
