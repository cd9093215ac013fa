"""Enforcing a room's server ACL on inbound federation (Server-Server API, "Server Access
Control Lists (ACLs)").

One checker serves every entry point: the X-Matrix authenticator asks it for each
authenticated request whose path names a room (``{roomId}``: make_*/send_*, invite,
/state, /state_ids, /backfill, /get_missing_events, /event_auth, /timestamp_to_event...),
``/event/{eventId}`` asks it for the event's room, and ``/send`` for each PDU's room and
each room-scoped EDU (typing, receipts). The room's current ACL is what counts; a room we
do not know has none.
"""

from __future__ import annotations

import logging

from homeserver.auth.server_acl import SERVER_ACL, ServerAcl
from homeserver.errors import MatrixError
from homeserver.util.caches import LruCache
from storage.events import EventStore

logger = logging.getLogger(__name__)


class ServerAclChecker:
    def __init__(self, store: EventStore) -> None:
        self._store = store
        # Compiled ACLs by the ID of their event: an event's content never changes.
        self._compiled: LruCache[str, ServerAcl] = LruCache(1000)

    async def is_allowed(self, origin: str, room_id: str) -> bool:
        event = await self._store.get_current_state_event(room_id, SERVER_ACL, "")
        if event is None:
            return True
        acl = self._compiled.get(event.event_id)
        if acl is None:
            acl = ServerAcl.from_content(event.content)
            self._compiled.set(event.event_id, acl)
        return acl.allows(origin)

    async def check(self, origin: str, room_id: str) -> None:
        """403 M_FORBIDDEN unless ``origin`` may take part in ``room_id``."""
        if not await self.is_allowed(origin, room_id):
            logger.info("server ACL of %s denies %s", room_id, origin)
            raise MatrixError(403, "M_FORBIDDEN", "Server is banned from room")
