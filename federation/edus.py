"""EDUs both ways: typing, read receipts, presence and to-device messages.

Inbound EDUs come through the transaction handler (``register``); each is believed only
about users of the server that sent it, and only for rooms those users are joined to.
Outbound EDUs go to the servers that share the room (typing, receipts) or a room
(presence) with the local user, through the federation sender's per-destination queues.
Device list and cross-signing EDUs are in ``federation.e2e``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from twisted.internet import defer

from homeserver.handlers.presence import PresenceHandler
from homeserver.handlers.receipts import READ, ReceiptsHandler
from homeserver.handlers.to_device import STREAM as TO_DEVICE_STREAM
from homeserver.handlers.typing import TypingHandler
from homeserver.notifier import Notifier
from storage.presence import PresenceRow
from storage.receipts import Receipt
from storage.to_device import OutgoingMessage, ToDeviceStore

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

TYPING = "m.typing"
RECEIPT = "m.receipt"
PRESENCE = "m.presence"
DIRECT_TO_DEVICE = "m.direct_to_device"
# Receipts of one room are gathered this long before they leave, so a burst (several
# users reading the same message) becomes one EDU per destination.
RECEIPT_BATCH_SECONDS = 0.05


class EduSender(Protocol):
    def send_edu(self, destination: str, edu_type: str, content: JsonDict) -> None: ...

    async def send_edu_durably(
        self, destination: str, edu_type: str, content: JsonDict
    ) -> None: ...


class EduRegistry(Protocol):
    def register_edu_handler(
        self, edu_type: str, handler: Callable[[str, JsonDict], Awaitable[None]]
    ) -> None: ...


def domain_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def _log_failure(what: str) -> Callable[[Any], None]:
    def errback(failure: Any) -> None:
        logger.error("%s failed: %s", what, failure.getTraceback())

    return errback


class FederationEdus:
    def __init__(
        self,
        *,
        server_name: str,
        sender: EduSender,
        get_joined_servers: Callable[[str], Awaitable[set[str]]],
        get_users_sharing_room: Callable[[str], Awaitable[set[str]]],
        typing: TypingHandler,
        receipts: ReceiptsHandler,
        presence: PresenceHandler,
        to_device_store: ToDeviceStore,
        notifier: Notifier,
        reactor: Any,
        now_ms: Callable[[], int],
    ) -> None:
        self.server_name = server_name
        self.sender = sender
        self.get_joined_servers = get_joined_servers
        self.get_users_sharing_room = get_users_sharing_room
        self.typing = typing
        self.receipts = receipts
        self.presence = presence
        self.to_device_store = to_device_store
        self.notifier = notifier
        self.reactor = reactor
        self.now_ms = now_ms
        # room_id -> user_id -> (event_id, data), waiting to be sent
        self._pending_receipts: dict[str, dict[str, tuple[str, JsonDict]]] = {}
        self._receipt_flush: Any = None
        typing.typing_listener = self._on_local_typing
        receipts.add_receipt_listener(self._on_local_receipt)
        presence.presence_listener = self._on_local_presence

    def is_mine(self, user_id: str) -> bool:
        return domain_of(user_id) == self.server_name

    def register(self, transactions: EduRegistry) -> None:
        transactions.register_edu_handler(TYPING, self.on_typing)
        transactions.register_edu_handler(RECEIPT, self.on_receipt)
        transactions.register_edu_handler(PRESENCE, self.on_presence)
        transactions.register_edu_handler(DIRECT_TO_DEVICE, self.on_direct_to_device)

    def stop(self) -> None:
        if self._receipt_flush is not None and self._receipt_flush.active():
            self._receipt_flush.cancel()

    # --- outbound ---------------------------------------------------------------------

    async def _room_destinations(self, room_id: str) -> set[str]:
        servers = await self.get_joined_servers(room_id)
        servers.discard(self.server_name)
        return servers

    def _on_local_typing(self, room_id: str, user_id: str, typing: bool, timeout_ms: int) -> None:
        if not self.is_mine(user_id):
            return
        d = defer.ensureDeferred(self._send_typing(room_id, user_id, typing, timeout_ms))
        d.addErrback(_log_failure("sending typing over federation"))

    async def _send_typing(self, room_id: str, user_id: str, typing: bool, timeout_ms: int) -> None:
        content: JsonDict = {"room_id": room_id, "user_id": user_id, "typing": typing}
        if typing:
            content["timeout"] = timeout_ms
        for destination in await self._room_destinations(room_id):
            self.sender.send_edu(destination, TYPING, content)

    async def _on_local_receipt(self, receipt: Receipt) -> None:
        # Private receipts never leave the server; other servers' receipts are theirs.
        if receipt.receipt_type != READ or not self.is_mine(receipt.user_id):
            return
        data: JsonDict = {"ts": receipt.ts}
        if receipt.thread_id is not None:
            data["thread_id"] = receipt.thread_id
        room = self._pending_receipts.setdefault(receipt.room_id, {})
        room[receipt.user_id] = (receipt.event_id, data)
        if self._receipt_flush is None or not self._receipt_flush.active():
            self._receipt_flush = self.reactor.callLater(RECEIPT_BATCH_SECONDS, self._flush)

    def _flush(self) -> None:
        pending, self._pending_receipts = self._pending_receipts, {}
        d = defer.ensureDeferred(self._send_receipts(pending))
        d.addErrback(_log_failure("sending receipts over federation"))

    async def _send_receipts(
        self, pending: Mapping[str, Mapping[str, tuple[str, JsonDict]]]
    ) -> None:
        by_destination: dict[str, JsonDict] = {}
        for room_id, users in pending.items():
            room_content = {
                READ: {
                    user_id: {"event_ids": [event_id], "data": data}
                    for user_id, (event_id, data) in users.items()
                }
            }
            for destination in await self._room_destinations(room_id):
                by_destination.setdefault(destination, {})[room_id] = room_content
        for destination, content in by_destination.items():
            self.sender.send_edu(destination, RECEIPT, content)

    def _on_local_presence(self, row: PresenceRow) -> None:
        if not self.is_mine(row.user_id):
            return
        d = defer.ensureDeferred(self._send_presence(row))
        d.addErrback(_log_failure("sending presence over federation"))

    async def _send_presence(self, row: PresenceRow) -> None:
        sharing = await self.get_users_sharing_room(row.user_id)
        destinations = {domain_of(u) for u in sharing} - {self.server_name, ""}
        if not destinations:
            return
        update: JsonDict = {
            "user_id": row.user_id,
            "presence": row.state,
            "currently_active": row.currently_active,
        }
        if row.last_active_ts:
            update["last_active_ago"] = max(0, self.now_ms() - row.last_active_ts)
        if row.status_msg:
            update["status_msg"] = row.status_msg
        for destination in destinations:
            self.sender.send_edu(destination, PRESENCE, {"push": [update]})

    async def send_to_device(
        self,
        destination: str,
        sender: str,
        message_type: str,
        message_id: str,
        messages: Mapping[str, Mapping[str, JsonDict]],
    ) -> None:
        content = {
            "sender": sender,
            "type": message_type,
            "message_id": message_id,
            "messages": messages,
        }
        # To-device messages carry encryption keys: they must survive a restart.
        await self.sender.send_edu_durably(destination, DIRECT_TO_DEVICE, content)

    # --- inbound ----------------------------------------------------------------------

    def _from_origin(self, origin: str, user_id: Any, what: str) -> bool:
        if isinstance(user_id, str) and domain_of(user_id) == origin:
            return True
        logger.info("%s from %s about %r ignored: not one of its users", what, origin, user_id)
        return False

    async def on_typing(self, origin: str, content: JsonDict) -> None:
        room_id, user_id = content.get("room_id"), content.get("user_id")
        if not isinstance(room_id, str) or not self._from_origin(origin, user_id, TYPING):
            return
        assert isinstance(user_id, str)
        typing = content.get("typing") is True
        if not await self.typing.set_remote_typing(room_id, user_id, typing):
            logger.info("typing of %s in %s ignored: not joined", user_id, room_id)

    async def on_receipt(self, origin: str, content: JsonDict) -> None:
        for room_id, by_type in content.items():
            if not isinstance(by_type, dict):
                continue
            # Only public read receipts travel; anything else is not ours to store.
            users = by_type.get(READ)
            if not isinstance(users, dict):
                continue
            for user_id, receipt in users.items():
                if not isinstance(receipt, dict) or not self._from_origin(origin, user_id, RECEIPT):
                    continue
                event_ids = receipt.get("event_ids")
                data = receipt.get("data")
                data = data if isinstance(data, dict) else {}
                if not isinstance(event_ids, list) or not event_ids:
                    continue
                ts = data.get("ts")
                ts = ts if isinstance(ts, int) and not isinstance(ts, bool) else self.now_ms()
                thread_id = data.get("thread_id")
                thread_id = thread_id if isinstance(thread_id, str) and thread_id else None
                for event_id in event_ids:
                    if isinstance(event_id, str):
                        await self.receipts.receive_remote_receipt(
                            room_id, user_id, event_id, thread_id, ts
                        )

    async def on_presence(self, origin: str, content: JsonDict) -> None:
        updates = content.get("push")
        if not isinstance(updates, list):
            return
        for update in updates:
            if not isinstance(update, dict):
                continue
            user_id = update.get("user_id")
            if not self._from_origin(origin, user_id, PRESENCE):
                continue
            assert isinstance(user_id, str)
            # Only users someone here shares a room with are of any interest.
            sharing = await self.get_users_sharing_room(user_id)
            if not any(self.is_mine(u) for u in sharing):
                continue
            ago = update.get("last_active_ago")
            status_msg = update.get("status_msg")
            await self.presence.set_remote_presence(
                user_id,
                str(update.get("presence")),
                status_msg if isinstance(status_msg, str) else None,
                ago if isinstance(ago, int) and not isinstance(ago, bool) and ago >= 0 else None,
                update.get("currently_active") is True,
            )

    async def on_direct_to_device(self, origin: str, content: JsonDict) -> None:
        sender = content.get("sender")
        message_type = content.get("type")
        message_id = content.get("message_id")
        messages = content.get("messages")
        if not self._from_origin(origin, sender, DIRECT_TO_DEVICE):
            return
        if not (
            isinstance(message_type, str)
            and isinstance(message_id, str)
            and isinstance(messages, dict)
        ):
            logger.info("malformed to-device EDU from %s ignored", origin)
            return
        assert isinstance(sender, str)
        outgoing: list[OutgoingMessage] = []
        for user_id, by_device in messages.items():
            if not isinstance(by_device, dict) or not self.is_mine(user_id):
                continue
            for device_id, message_content in by_device.items():
                if isinstance(message_content, dict):
                    message = {"type": message_type, "sender": sender, "content": message_content}
                    outgoing.append(OutgoingMessage(user_id, device_id, message))
        if not outgoing:
            return
        # A retried transaction repeats the EDU: the (sender, message_id) pair is its
        # transaction ID, so it is delivered once.
        delivered = await self.to_device_store.send(
            sender, f"federation:{origin}", message_id, outgoing, self.now_ms()
        )
        for user_id, position in (delivered or {}).items():
            self.notifier.notify(TO_DEVICE_STREAM, position, users=[user_id])
