"""``GET /notifications``: the events that notified the user, newest first."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.notification_counts import NotificationCounter
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, counter: NotificationCounter) -> None:
    async def get_notifications(request: HttpRequest) -> dict[str, Any]:
        return await counter.get_notifications(
            request.requester.user_id,
            from_token=request.query_string("from"),
            limit=request.query_int("limit"),
            only=request.query_string("only"),
        )

    router.add("GET", client_patterns("/notifications"), get_notifications, auth=Auth.USER)
