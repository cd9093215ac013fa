"""``GET /sync``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.errors import invalid_param
from homeserver.handlers.filters import FilterHandler
from homeserver.handlers.sync import SyncHandler, SyncRequest
from homeserver.streams import StreamToken, TokenError
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns

PRESENCE_STATES = ("online", "offline", "unavailable")

# Called with (user_id, set_presence) when a /sync asks to set the user's presence.
PresenceSetter = Callable[[str, str], Awaitable[None]]


def register(
    router: Router,
    sync: SyncHandler,
    filters: FilterHandler,
    set_presence: PresenceSetter | None = None,
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
        presence = request.query_string("set_presence", "online")
        if presence not in PRESENCE_STATES:
            raise invalid_param("set_presence must be one of " + ", ".join(PRESENCE_STATES))
        sync_filter = await filters.resolve(requester.user_id, request.query_string("filter"))
        if set_presence is not None:
            await set_presence(requester.user_id, presence)
        return await sync.sync(
            SyncRequest(
                requester=requester,
                since=since,
                timeout_ms=max(0, timeout),
                full_state=request.query_bool("full_state"),
                filter=sync_filter,
                use_state_after=request.query_bool("use_state_after")
                or request.query_bool("org.matrix.msc4222.use_state_after"),
            )
        )

    router.add("GET", client_patterns("/sync"), get_sync, auth=Auth.USER)
