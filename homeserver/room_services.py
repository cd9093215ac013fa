"""The rooms side of the server, built in one place: creation, membership, state,
sending and upgrades, over the event store and event creator."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from homeserver.events.model import Event, JsonDict
from homeserver.handlers.directory import DirectoryHandler
from homeserver.handlers.event_creation import EventCreator
from homeserver.handlers.membership import MembershipHandler, ProfileSource, RoomMembershipSync
from homeserver.handlers.room_creation import RoomCreationHandler
from homeserver.handlers.room_send import RoomSendHandler
from homeserver.handlers.room_state import RoomStateHandler
from homeserver.handlers.room_upgrade import RoomUpgradeHandler
from homeserver.handlers.serialize import EventSerializer
from homeserver.handlers.visibility import can_see_event
from homeserver.types import Requester
from storage.directory import DirectoryStore
from storage.engine import Database
from storage.events import EventStore
from storage.room_history import RoomHistoryStore
from storage.room_members import RoomMemberStore


class RoomServices:
    def __init__(
        self,
        *,
        server_name: str,
        default_room_version: str,
        database: Database,
        event_store: EventStore,
        event_creator: EventCreator,
        directory: DirectoryHandler,
        directory_store: DirectoryStore,
        profiles: ProfileSource,
        history_store: RoomHistoryStore,
        serializer: EventSerializer,
        now_ms: Callable[[], int],
    ) -> None:
        async def serialize(events: Sequence[Event], requester: Requester | None) -> list[JsonDict]:
            return await serializer.serialize_events(events, requester=requester)

        async def can_see(user_id: str, event: Event) -> bool:
            return await can_see_event(history_store, user_id, event)

        self.member_store = RoomMemberStore(database)
        self.membership = MembershipHandler(
            server_name=server_name,
            event_creator=event_creator,
            event_store=event_store,
            member_store=self.member_store,
            profiles=profiles,
            directory=directory,
        )
        self.creation = RoomCreationHandler(
            server_name=server_name,
            event_creator=event_creator,
            profiles=profiles,
            directory=directory,
            default_room_version=default_room_version,
            membership=self.membership,
        )
        self.state = RoomStateHandler(
            event_store=event_store,
            member_store=self.member_store,
            event_creator=event_creator,
            membership=self.membership,
            directory=directory,
            now_ms=now_ms,
            serialize=serialize,
        )
        self.send = RoomSendHandler(
            event_store=event_store,
            event_creator=event_creator,
            room_state=self.state,
            now_ms=now_ms,
            can_see=can_see,
            serialize=serialize,
        )
        self.upgrade = RoomUpgradeHandler(
            event_store=event_store,
            member_store=self.member_store,
            event_creator=event_creator,
            room_creation=self.creation,
            directory=directory,
            directory_store=directory_store,
        )
        # Profile changes and deactivations reach the member events through this.
        self.membership_sync = RoomMembershipSync(self.membership, self.member_store)
