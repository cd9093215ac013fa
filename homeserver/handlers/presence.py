"""Presence of local users: online / unavailable / offline, status messages, last activity.

As Synapse does (its timers and defaults):

- activity (sending, typing, receipts, a PUT of "online", a /sync that sets "online")
  sets ``last_active_ts`` and makes an "unavailable" user "online" again;
- ``currently_active`` is true while the last activity is under ``last_active_granularity``
  old, so clients are not sent a presence update for every message;
- an online user inactive for ``idle_timeout`` (5 minutes) becomes "unavailable";
- a user with no /sync running and neither sync nor activity for ``sync_online_timeout``
  (30 seconds) becomes "offline".

Changes that matter to other users (state, status message, currently_active) are
persisted and take the next presence stream position; activity while already currently
active only moves ``last_active_ts`` in memory (it is reported as ``last_active_ago``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from twisted.internet import defer

from homeserver.config.model import PresenceConfig
from homeserver.errors import bad_json, forbidden, invalid_param
from homeserver.notifier import RoomEventsNotice
from homeserver.streams import StreamToken
from homeserver.types import Requester, UserID
from homeserver.util.linearizer import Linearizer
from storage.presence import PresenceRow, PresenceStore

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

STREAM = "presence"
ONLINE = "online"
UNAVAILABLE = "unavailable"
OFFLINE = "offline"
STATES = (ONLINE, UNAVAILABLE, OFFLINE)

# How often the timers are looked at (Synapse: every 5 seconds).
CHECK_INTERVAL_S = 5.0


class _Keep:
    """Leave the status message as it is."""


KEEP = _Keep()
_RUNNING = object()


def _offline(user_id: str) -> PresenceRow:
    return PresenceRow(user_id, OFFLINE, None, 0, False)


class PresenceHandler:
    name = STREAM

    def __init__(
        self,
        *,
        store: PresenceStore,
        notifier: Any,
        clock: Any,
        now_ms: Callable[[], int],
        settings: PresenceConfig,
        get_rooms_for_user: Callable[[str], Awaitable[Sequence[str]]],
        server_name: str = "",
    ) -> None:
        self.store = store
        self._notifier = notifier
        self._clock = clock  # anything with callLater (the reactor)
        self._now_ms = now_ms
        self.settings = settings
        self._get_rooms_for_user = get_rooms_for_user
        # Users who are not offline (the timers watch them), by user ID.
        self._live: dict[str, PresenceRow] = {}
        self._last_sync_ts: dict[str, int] = {}
        self._syncing: dict[str, int] = {}
        self._locks = Linearizer()
        self._timer: Any = None
        self._stopped = False
        self._server_suffix = f":{server_name}"
        # Told of every notable change of a local user's presence, for federation.
        self.presence_listener: Callable[[PresenceRow], None] | None = None
        # Sending counts as activity (as Synapse): hear of every local event.
        if hasattr(notifier, "add_listener"):
            notifier.add_listener(self._on_room_events)

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def current_position(self) -> int:
        return self.store.current_position()

    async def load_positions(self) -> None:
        """Start the stream after the stored positions; watch whoever is not offline."""
        await self.store.load_positions()
        if not self.enabled:
            return
        for row in await self.store.get_not_offline():
            if self._is_local(row.user_id):  # other servers time out their own users
                self._live[row.user_id] = row
        self._schedule()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None and self._timer is not _RUNNING and self._timer.active():
            self._timer.cancel()

    # --- the client API -----------------------------------------------------------------

    async def put_status(self, requester: Requester, user_id: str, body: JsonDict) -> None:
        """PUT /presence/{userId}/status."""
        if user_id != requester.user_id:
            raise forbidden("Can only set your own presence state")
        if "presence" not in body:
            raise bad_json("Missing 'presence'")
        state = body["presence"]
        if state not in STATES:
            raise invalid_param(f"presence must be one of {', '.join(STATES)}")
        status_msg = body.get("status_msg")
        if status_msg is not None and not isinstance(status_msg, str):
            raise bad_json("status_msg must be a string")
        await self.set_state(user_id, state, status_msg)

    async def get_status(self, requester: Requester, user_id: str) -> JsonDict:
        """GET /presence/{userId}/status: yourself, or someone you share a room with."""
        try:
            UserID.parse(user_id)
        except ValueError as e:
            raise invalid_param(str(e)) from None
        if not self.enabled:
            return {"presence": OFFLINE}
        if user_id != requester.user_id and not await self._share_a_room(
            requester.user_id, user_id
        ):
            raise forbidden("You are not allowed to see their presence.")
        row = (await self._current([user_id]))[user_id]
        return self._format(row, self._now_ms())

    async def _share_a_room(self, a: str, b: str) -> bool:
        rooms_a = set(await self._get_rooms_for_user(a))
        if not rooms_a:
            return False
        return not rooms_a.isdisjoint(await self._get_rooms_for_user(b))

    # --- what other handlers call -------------------------------------------------------

    async def set_state(
        self,
        user_id: str,
        state: str,
        status_msg: str | _Keep | None = KEEP,
        *,
        from_sync: bool = False,
    ) -> None:
        """Set the user's presence. ``from_sync``: /sync's ``set_presence`` (it also
        records that the user is syncing; "offline" there means "do not change it")."""
        if state not in STATES:
            raise invalid_param(f"presence must be one of {', '.join(STATES)}")
        if not self.enabled:
            return
        now = self._now_ms()
        if from_sync:
            self._last_sync_ts[user_id] = now
            if state == OFFLINE:
                return
        async with self._locks.lock(user_id):
            prev = (await self._current([user_id]))[user_id]
            new = replace(prev, state=state)
            if not isinstance(status_msg, _Keep):
                new = replace(new, status_msg=status_msg)
            if state == ONLINE:
                new = replace(new, last_active_ts=now)
            await self._apply(prev, self._with_activity(new, now))

    async def bump_active(self, user_id: str) -> None:
        """The user did something: last active now, "unavailable" becomes "online"
        (an explicit "offline" stays offline, as in Synapse)."""
        if not self.enabled:
            return
        now = self._now_ms()
        async with self._locks.lock(user_id):
            prev = (await self._current([user_id]))[user_id]
            new = replace(prev, last_active_ts=now)
            if prev.state == UNAVAILABLE:
                new = replace(new, state=ONLINE)
            await self._apply(prev, self._with_activity(new, now))

    async def set_remote_presence(
        self,
        user_id: str,
        state: str,
        status_msg: str | None,
        last_active_ago: int | None,
        currently_active: bool,
    ) -> None:
        """Another server's word on its user's presence: stored as is (no timers here),
        and the rooms the user is in are woken."""
        if not self.enabled or state not in STATES or self._is_local(user_id):
            return
        last_active_ts = self._now_ms() - last_active_ago if last_active_ago is not None else 0
        row = PresenceRow(user_id, state, status_msg, max(0, last_active_ts), currently_active)
        async with self._locks.lock(user_id):
            prev = (await self.store.get([user_id])).get(user_id) or _offline(user_id)
            if replace(prev, stream_id=0, last_active_ts=0) == replace(row, last_active_ts=0):
                return
            position = await self.store.put(row)
        rooms = await self._get_rooms_for_user(user_id)
        self._notifier.notify(STREAM, position, users=[user_id], rooms=rooms)

    def _is_local(self, user_id: str) -> bool:
        return self._server_suffix == ":" or user_id.endswith(self._server_suffix)

    def _on_room_events(self, notice: RoomEventsNotice) -> None:
        if not self.enabled or self._stopped:
            return
        senders = {
            e.sender
            for e in notice.events
            if e.type != "m.room.member" and e.sender.endswith(self._server_suffix)
        }
        for sender in senders:
            d = defer.ensureDeferred(self.bump_active(sender))
            d.addErrback(lambda f: logger.error("presence bump failed: %s", f.getErrorMessage()))

    @contextmanager
    def syncing(self, user_id: str) -> Iterator[None]:
        """Wrap a /sync request: while one runs, the user does not go offline."""
        self._syncing[user_id] = self._syncing.get(user_id, 0) + 1
        try:
            yield
        finally:
            self._last_sync_ts[user_id] = self._now_ms()
            left = self._syncing[user_id] - 1
            if left:
                self._syncing[user_id] = left
            else:
                del self._syncing[user_id]

    # --- for /sync ----------------------------------------------------------------------

    async def get_presence_updates(
        self, user_ids_of_interest: Sequence[str], since: int | None
    ) -> list[JsonDict]:
        """``m.presence`` events for the users of ``user_ids_of_interest`` whose presence
        changed after position ``since``; with no position, the current presence of
        those who are not offline."""
        if not self.enabled or not user_ids_of_interest:
            return []
        if since is None:
            rows = await self.store.get(user_ids_of_interest)
            chosen = [r for r in rows.values() if r.state != OFFLINE]
        else:
            chosen = list((await self.store.get_changes(user_ids_of_interest, since)).values())
        now = self._now_ms()
        events = []
        for row in sorted(chosen, key=lambda r: r.stream_id):
            live = self._live.get(row.user_id)
            if live is not None:
                row = replace(row, last_active_ts=max(row.last_active_ts, live.last_active_ts))
            events.append(
                {"type": "m.presence", "sender": row.user_id, "content": self._format(row, now)}
            )
        return events

    async def sync_presence(
        self, user_id: str, room_ids: Sequence[str], since: StreamToken | None
    ) -> list[JsonDict]:
        """SyncSections.presence provider: the user and everyone joined to ``room_ids``
        (their joined rooms) are of interest. An incremental sync looks only at the
        users whose presence moved after the token."""
        if not self.enabled:
            return []
        if since is None:
            users = await self.store.get_joined_users(room_ids)
            users.add(user_id)
            return await self.get_presence_updates(sorted(users), None)
        position = dict(since.extra).get(STREAM, 0)
        changed = await self.store.get_changed_users(position)
        if not changed:
            return []
        interesting = await self.store.get_joined_users(room_ids, changed)
        if user_id in changed:
            interesting.add(user_id)
        return await self.get_presence_updates(sorted(interesting), position)

    # --- internals ----------------------------------------------------------------------

    @staticmethod
    def _format(row: PresenceRow, now: int) -> JsonDict:
        content: JsonDict = {"presence": row.state}
        if row.last_active_ts:
            content["last_active_ago"] = max(0, now - row.last_active_ts)
        if row.status_msg:
            content["status_msg"] = row.status_msg
        if row.state == ONLINE:
            content["currently_active"] = row.currently_active
        return content

    def _with_activity(self, row: PresenceRow, now: int) -> PresenceRow:
        active = (
            row.state == ONLINE
            and row.last_active_ts > 0
            and now - row.last_active_ts < self.settings.last_active_granularity_ms
        )
        return replace(row, currently_active=active)

    async def _current(self, user_ids: Sequence[str]) -> dict[str, PresenceRow]:
        found = {u: self._live[u] for u in user_ids if u in self._live}
        missing = [u for u in user_ids if u not in found]
        if missing:
            stored = await self.store.get(missing)
            for user_id in missing:
                found[user_id] = stored.get(user_id) or _offline(user_id)
        return found

    async def _apply(self, prev: PresenceRow, new: PresenceRow) -> None:
        notable = (
            prev.state != new.state
            or prev.status_msg != new.status_msg
            or prev.currently_active != new.currently_active
        )
        if notable:
            position = await self.store.put(new)
            new = replace(new, stream_id=position)
        if new.state == OFFLINE:
            self._live.pop(new.user_id, None)
        else:
            self._live[new.user_id] = new
        if notable:
            self._notifier.notify(STREAM, self.store.current_position(), users=[new.user_id])
            if self.presence_listener is not None:
                self.presence_listener(new)
        if self._live:
            self._schedule()

    def _schedule(self) -> None:
        if self._stopped or self._timer is not None:
            return
        self._timer = self._clock.callLater(CHECK_INTERVAL_S, self._on_timer)

    def _on_timer(self) -> None:
        # Not None while the check runs, so _apply does not start a second timer.
        self._timer = _RUNNING
        d = defer.ensureDeferred(self.check_timeouts())
        d.addErrback(lambda f: logger.error("presence timers failed: %s", f.getErrorMessage()))
        d.addBoth(self._after_check)

    def _after_check(self, _: object) -> None:
        self._timer = None
        if self._live:
            self._schedule()

    async def check_timeouts(self) -> None:
        """Apply the idle, currently-active and offline timers to everyone watched."""
        now = self._now_ms()
        settings = self.settings
        for user_id in list(self._live):
            if self._stopped:
                return
            async with self._locks.lock(user_id):
                prev = self._live.get(user_id)
                if prev is None:
                    continue
                new = prev
                if new.state == ONLINE and now - new.last_active_ts > settings.idle_timeout_ms:
                    new = replace(new, state=UNAVAILABLE)
                last_seen = max(self._last_sync_ts.get(user_id, 0), new.last_active_ts)
                if (
                    user_id not in self._syncing
                    and now - last_seen > settings.sync_online_timeout_ms
                ):
                    new = replace(new, state=OFFLINE)
                new = self._with_activity(new, now)
                if new != prev:
                    await self._apply(prev, new)
