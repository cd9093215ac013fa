"""``POST /rooms/{roomId}/receipt/{receiptType}/{eventId}``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.receipts import ReceiptsHandler, parse_thread_id
from rest.errors import invalid_param
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, receipts: ReceiptsHandler) -> None:
    async def post_receipt(request: HttpRequest) -> dict[str, Any]:
        params = request.path_params
        event_id = params["eventId"]
        if not event_id.startswith("$"):
            raise invalid_param(f"{event_id!r} is not an event ID")
        # An empty body is allowed: older clients send none.
        body = request.json() if request.body.strip() else {}
        await receipts.send_receipt(
            request.requester,
            params["roomId"],
            params["receiptType"],
            event_id,
            parse_thread_id(body),
        )
        return {}

    router.add(
        "POST",
        client_patterns("/rooms/{roomId}/receipt/{receiptType}/{eventId}"),
        post_receipt,
        auth=Auth.USER,
    )
