"""``GET /sync``."""

from __future__ import annotations

from typing import Any

from homeserver.errors import invalid_param
from homeserver.handlers.filters import FilterHandler
from homeserver.handlers.presence import PresenceHandler
from homeserver.handlers.sync import SyncHandler, SyncRequest
from homeserver.streams import StreamToken, TokenError
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns

PRESENCE_STATES = ("online", "offline", "unavailable")


def register(
    router: Router,
    sync: SyncHandler,
    filters: FilterHandler,
    presence_handler: PresenceHandler | None = None,
) -> None:
    async def get_sync(request: HttpRequest) -> dict[str, Any]:
        requester = request.requester
        since_text = request.query_string("since")
        since = None
        if since_text:
            try:
                since = StreamToken.parse(since_text)
            except TokenError:
                raise invalid_param(f"Invalid since token {since_text!r}") from None
        timeout = request.query_int("timeout", 0) or 0
        presence_state = request.query_string("set_presence", "online") or "online"
        if presence_state not in PRESENCE_STATES:
            raise invalid_param("set_presence must be one of " + ", ".join(PRESENCE_STATES))
        sync_filter = await filters.resolve(requester.user_id, request.query_string("filter"))
        sync_request = SyncRequest(
            requester=requester,
            since=since,
            timeout_ms=max(0, timeout),
            full_state=request.query_bool("full_state"),
            filter=sync_filter,
            use_state_after=request.query_bool("use_state_after")
            or request.query_bool("org.matrix.msc4222.use_state_after"),
        )
        if presence_handler is None:
            return await sync.sync(sync_request)
        await presence_handler.set_state(requester.user_id, presence_state, from_sync=True)
        # While the long-poll runs the user counts as syncing, so never goes offline.
        with presence_handler.syncing(requester.user_id):
            return await sync.sync(sync_request)

    router.add("GET", client_patterns("/sync"), get_sync, auth=Auth.USER)
