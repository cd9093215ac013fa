"""Rooms built in-process (EventCreator, no HTTP) for the history tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from signedjson.key import generate_signing_key

from homeserver.events.model import Event
from homeserver.handlers.event_creation import EventCreator, EventSpec
from homeserver.handlers.pagination import PaginationHandler
from homeserver.handlers.serialize import EventSerializer
from homeserver.notifier import Notifier
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.types import Requester
from storage.engine import Database
from storage.events import EventStore
from storage.room_history import RoomHistoryStore

ALICE = "@alice:hs.test"
BOB = "@bob:hs.test"
CAROL = "@carol:hs.test"


@dataclass
class Clock:
    now: int = 1_700_000_000_000

    def __call__(self) -> int:
        self.now += 1000
        return self.now


@dataclass
class History:
    """A server's room machinery on one database, with helpers to build rooms."""

    database: Database
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.store = EventStore(self.database)
        self.creator = EventCreator(
            server_name="hs.test",
            signing_key=generate_signing_key("t1"),
            store=self.store,
            notifier=Notifier(),
            now_ms=self.clock,
        )
        self.history = RoomHistoryStore(self.database, self.store)
        self.serializer = EventSerializer(self.store, self.history, self.clock)
        self.pagination = PaginationHandler(self.store, self.history, self.serializer)

    async def start(self) -> None:
        await self.store.load_positions()

    async def create_room(
        self, visibility: str | None = None, version: str = "10", join_rule: str = "public"
    ) -> str:
        room_version = KNOWN_ROOM_VERSIONS[version]
        create: dict[str, Any] = {"room_version": version}
        if not room_version.implicit_room_creator:
            create["creator"] = ALICE
        users = {} if room_version.creators_have_infinite_power else {ALICE: 100}
        specs = [
            EventSpec("m.room.create", ALICE, create, ""),
            EventSpec("m.room.member", ALICE, {"membership": "join"}, ALICE),
            EventSpec("m.room.power_levels", ALICE, {"users": users}, ""),
            EventSpec("m.room.join_rules", ALICE, {"join_rule": join_rule}, ""),
        ]
        if visibility is not None:
            specs.append(
                EventSpec(
                    "m.room.history_visibility", ALICE, {"history_visibility": visibility}, ""
                )
            )
        room_id, _ = await self.creator.create_room(room_version, ALICE, specs)
        return room_id

    async def send(self, room_id: str, sender: str, body: str, **content: Any) -> Event:
        return await self.creator.send(
            room_id,
            EventSpec("m.room.message", sender, {"msgtype": "m.text", "body": body, **content}),
        )

    async def state(
        self, room_id: str, sender: str, event_type: str, content: dict[str, Any], key: str = ""
    ) -> Event:
        return await self.creator.send(room_id, EventSpec(event_type, sender, content, key))

    async def membership(self, room_id: str, sender: str, target: str, membership: str) -> Event:
        content = {"membership": membership}
        return await self.state(room_id, sender, "m.room.member", content, target)

    async def messages(self, user_id: str, room_id: str, **kwargs: Any) -> dict[str, Any]:
        options: dict[str, Any] = {
            "backwards": True,
            "from_token": None,
            "to_token": None,
            "limit": 10,
            "event_filter": None,
        }
        options.update(kwargs)
        return await self.pagination.get_messages(requester(user_id), room_id, **options)

    async def all_messages(
        self, user_id: str, room_id: str, **kwargs: Any
    ) -> tuple[list[dict[str, Any]], int]:
        """Every event a user can page through, following ``end``; and the page count."""
        chunk: list[dict[str, Any]] = []
        pages = 0
        token = kwargs.pop("from_token", None)
        while True:
            page = await self.messages(user_id, room_id, from_token=token, **kwargs)
            pages += 1
            chunk.extend(page["chunk"])
            if "end" not in page:
                return chunk, pages
            token = page["end"]
            assert pages < 1000


def requester(user_id: str, device_id: str | None = "DEVICE") -> Requester:
    return Requester(user_id=user_id, device_id=device_id)


def bodies(chunk: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in chunk if e["type"] == "m.room.message"]
