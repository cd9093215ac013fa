"""``PUT /sendToDevice/{eventType}/{txnId}`` and the ``to_device`` section of /sync.

A message waits in its device's inbox until a later /sync of that device acknowledges it
(its since token reaches the message's position): a sync response lost on the way never
loses the messages it carried.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable

from homeserver.errors import bad_json, invalid_param
from homeserver.events.model import JsonDict
from homeserver.handlers.remote_keys import RemoteKeys
from homeserver.notifier import Notifier
from homeserver.streams import StreamToken
from homeserver.types import Requester, UserID
from storage.to_device import OutgoingMessage, ToDeviceStore

logger = logging.getLogger(__name__)

STREAM = "to_device"


class ToDeviceHandler:
    def __init__(
        self,
        *,
        server_name: str,
        store: ToDeviceStore,
        notifier: Notifier,
        remote: RemoteKeys,
        now_ms: Callable[[], int],
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.notifier = notifier
        self.remote = remote
        self.now_ms = now_ms

    async def send(
        self, requester: Requester, message_type: str, txn_id: str, body: JsonDict
    ) -> None:
        messages = body.get("messages")
        if not isinstance(messages, dict):
            raise bad_json("'messages' must map user IDs to devices to messages")
        local: list[OutgoingMessage] = []
        remote: dict[str, dict[str, dict[str, JsonDict]]] = defaultdict(dict)
        for user_id, by_device in messages.items():
            try:
                UserID.parse(user_id)
            except ValueError:
                raise invalid_param(f"Invalid user ID {user_id!r}") from None
            if not isinstance(by_device, dict) or not all(
                isinstance(c, dict) for c in by_device.values()
            ):
                raise bad_json(f"'messages.{user_id}' must map device IDs to message contents")
            domain = user_id.split(":", 1)[1]
            if domain != self.server_name:
                remote[domain][user_id] = by_device
                continue
            for device_id, content in by_device.items():
                message = {"type": message_type, "sender": requester.user_id, "content": content}
                local.append(OutgoingMessage(user_id, device_id, message))
        sender_device = requester.device_id or ""
        delivered = await self.store.send(
            requester.user_id, sender_device, txn_id, local, self.now_ms()
        )
        if delivered is None:
            return  # a retry of a transaction already done
        for user_id, position in delivered.items():
            self.notifier.notify(STREAM, position, users=[user_id])
        for server_name, by_user in remote.items():
            message_id = f"{requester.user_id}/{sender_device}/{txn_id}"
            await self.remote.send_to_device(
                server_name, requester.user_id, message_type, message_id, by_user
            )

    async def sync_section(
        self, requester: Requester, since: StreamToken | None, now: StreamToken | None = None
    ) -> JsonDict:
        """``now``: the response's token; without it (an older sync handler), up to the
        current position, which a later sync may hand out again."""
        if requester.device_id is None:
            return {"to_device": {"events": []}}
        after = dict(since.extra).get(STREAM, 0) if since is not None else 0
        upto = dict(now.extra).get(STREAM, 0) if now is not None else self.store.current_position()
        events = await self.store.take(requester.user_id, requester.device_id, after, upto)
        return {"to_device": {"events": events}}
