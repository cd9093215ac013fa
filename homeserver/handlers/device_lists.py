"""Device lists: who must hear that a user's devices changed, and what /sync and
/keys/changes tell each user about the users they share rooms with."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from twisted.internet import defer

from homeserver.events.model import JsonDict
from homeserver.handlers.remote_keys import RemoteKeys
from homeserver.notifier import Notifier
from homeserver.streams import RoomStreamToken, StreamToken
from homeserver.types import Requester
from storage.device_lists import DeviceListStore
from storage.e2e_keys import E2EKeyStore

logger = logging.getLogger(__name__)

STREAM = "device_lists"


def _domain(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


class DeviceListHandler:
    def __init__(
        self,
        *,
        server_name: str,
        store: DeviceListStore,
        keys: E2EKeyStore,
        notifier: Notifier,
        remote: RemoteKeys,
        room_position: Callable[[], int],
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.keys = keys
        self.notifier = notifier
        self.remote = remote
        self.room_position = room_position

    async def notify_change(
        self, user_id: str, position: int, device_ids: Collection[str] = ()
    ) -> None:
        """Wake the user and everyone sharing a room with them; tell the other servers."""
        users = await self.store.get_users_sharing_room(user_id)
        users.add(user_id)
        self.notifier.notify(STREAM, position, users=users)
        destinations = {_domain(u) for u in users} - {self.server_name}
        if destinations:
            await self.remote.device_list_changed(user_id, device_ids, destinations)

    def notify_change_soon(self, user_id: str, position: int) -> None:
        """``notify_change`` from a synchronous caller (the device deletion hook)."""

        async def run() -> None:
            try:
                await self.notify_change(user_id, position)
            except Exception:
                logger.exception("could not announce the device list change of %s", user_id)

        defer.ensureDeferred(run())

    async def get_changes(
        self, user_id: str, since: StreamToken, upto: StreamToken
    ) -> tuple[list[str], list[str]]:
        """(changed, left) between two tokens, as /sync's device_lists and /keys/changes say.

        "changed": users sharing a room with ``user_id`` whose devices or keys changed, or
        who newly share a room with them; "left": users who shared a room and no longer do.
        """
        since_lists = dict(since.extra).get(STREAM, 0)
        upto_lists = dict(upto.extra).get(STREAM, 0)
        device_changes = await self.store.get_changed_users(since_lists, upto_lists)
        memberships = await self.store.get_membership_changes_near(
            user_id, since.room_key.stream, upto.room_key.stream
        )
        mine: dict[str, str] = {}  # room -> my latest membership in the range
        others_joined: set[str] = set()
        others_left: set[str] = set()
        for change in memberships:
            if change.user_id == user_id:
                mine[change.room_id] = change.membership
            elif change.membership == "join":
                others_joined.add(change.user_id)
            elif change.membership in ("leave", "ban"):
                others_left.add(change.user_id)
        joined_rooms = [room for room, m in mine.items() if m == "join"]
        left_rooms = [room for room, m in mine.items() if m in ("leave", "ban")]
        newly_shared = others_joined | await self.store.get_joined_members(joined_rooms)
        gone = others_left | await self.store.get_joined_members(left_rooms)
        candidates = device_changes | newly_shared | gone
        if not candidates:
            return [], []
        shared = await self.store.get_users_sharing_room(user_id, among=candidates)
        changed = ((device_changes | newly_shared) & shared) - {user_id}
        if user_id in device_changes:
            changed.add(user_id)  # a user's other devices must hear of their own changes
        left = gone - shared - {user_id}
        return sorted(changed), sorted(left)

    async def sync_section(
        self, requester: Requester, since: StreamToken | None, now: StreamToken | None = None
    ) -> JsonDict:
        section: JsonDict = {}
        if since is not None:
            if now is None:  # an older sync handler: read up to the current positions
                now = StreamToken(
                    RoomStreamToken(None, self.room_position()),
                    tuple(
                        (n, self.store.current_position() if n == STREAM else p)
                        for n, p in since.extra
                    ),
                )
            changed, left = await self.get_changes(requester.user_id, since, now)
            section["device_lists"] = {"changed": changed, "left": left}
        if requester.device_id is not None:
            counts, fallback_types = await self.keys.get_key_counts(
                requester.user_id, requester.device_id
            )
            section["device_one_time_keys_count"] = counts
            section["device_unused_fallback_key_types"] = fallback_types
        return section
