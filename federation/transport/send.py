"""``PUT /_matrix/federation/v1/send/{txnId}``: another server's transaction of PDUs and EDUs.

Transactions from one origin are handled one at a time: another transaction arriving
while one is in hand gets 429 (as Synapse: a server sends its transactions to us one
after the other, so only a misbehaving one is refused, and it cannot pile up work); a
retried transaction (same origin and ID) waits for, then gets, the answer the first one
got. This is what bounds /send per origin, instead of the ``rc_federation`` limiter of
the other endpoints (which would make a server catching up sleep between transactions).

A PDU that fails its checks is reported in the answer's ``pdus`` map and never fails the
transaction (spec), and so is a PDU for a room whose server ACL denies the origin. EDUs
are handed to the handler registered for their type (unknown types are ignored), except
typing notifications and receipts for rooms whose ACL denies the origin.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from federation.acl import ServerAclChecker
from federation.inbound import FederationEventHandler
from homeserver.errors import MatrixError, bad_json
from homeserver.events.errors import EventValidationError
from homeserver.events.hashing import make_event
from homeserver.events.model import JsonDict
from homeserver.util.caches import LruCache
from homeserver.util.linearizer import Linearizer
from rest.request import HttpRequest
from rest.router import Auth, Router

logger = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100

EduHandler = Callable[[str, JsonDict], Awaitable[None]]


class TransactionHandler:
    def __init__(self, events: FederationEventHandler) -> None:
        self.events = events
        self.edu_handlers: dict[str, EduHandler] = {}
        self._origins = Linearizer()
        self._answers: LruCache[tuple[str, str], JsonDict] = LruCache(1000)
        # The transaction each origin has in hand.
        self._active: dict[str, str] = {}
        # Set by the app: rooms' server ACLs, applied per PDU and per room-scoped EDU.
        self.acl: ServerAclChecker | None = None
        # Called with the origin of every transaction: a server that sends is reachable.
        self.on_origin_seen: Callable[[str], None] | None = None

    def register_edu_handler(self, edu_type: str, handler: EduHandler) -> None:
        self.edu_handlers[edu_type] = handler

    async def on_transaction(self, origin: str, txn_id: str, body: JsonDict) -> JsonDict:
        if self.on_origin_seen is not None:
            self.on_origin_seen(origin)
        pdus = body.get("pdus", [])
        edus = body.get("edus", [])
        if not isinstance(pdus, list) or not isinstance(edus, list):
            logger.info("refusing transaction %s from %s: pdus or edus not a list", txn_id, origin)
            raise bad_json("pdus and edus must be lists")
        if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
            logger.info(
                "refusing transaction %s from %s: %d PDUs and %d EDUs",
                txn_id,
                origin,
                len(pdus),
                len(edus),
            )
            raise MatrixError(
                400,
                "M_BAD_JSON",
                f"a transaction carries at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs",
            )
        active = self._active.get(origin)
        if active is not None and active != txn_id:
            logger.info("refusing transaction %s from %s: %s still in hand", txn_id, origin, active)
            raise MatrixError(429, "M_LIMIT_EXCEEDED", "Too many concurrent transactions")
        self._active[origin] = txn_id
        try:
            async with self._origins.lock(origin):
                return await self._transaction(origin, txn_id, pdus, edus)
        finally:
            if self._active.get(origin) == txn_id:
                del self._active[origin]

    async def _transaction(
        self, origin: str, txn_id: str, pdus: list[Any], edus: list[Any]
    ) -> JsonDict:
        earlier = self._answers.get((origin, txn_id))
        if earlier is not None:
            return earlier
        results: dict[str, JsonDict] = {}
        for pdu in pdus:
            event_id, error = await self._one_pdu(origin, pdu)
            if event_id is not None:
                results[event_id] = {"error": error} if error else {}
        for edu in edus:
            await self._one_edu(origin, edu)
        answer: JsonDict = {"pdus": results}
        self._answers.set((origin, txn_id), answer)
        return answer

    async def _one_pdu(self, origin: str, pdu: Any) -> tuple[str | None, str | None]:
        if not isinstance(pdu, dict):
            logger.info("ignoring a PDU from %s: not a JSON object", origin)
            return None, None
        room_id = pdu.get("room_id")
        if not isinstance(room_id, str):
            logger.info("ignoring a PDU from %s: no room_id", origin)
            return None, None
        if self.acl is not None and not await self.acl.is_allowed(origin, room_id):
            event_id = await self._event_id_of(room_id, pdu)
            logger.info(
                "ignoring PDU %s from %s: the server ACL of %s denies it", event_id, origin, room_id
            )
            return event_id, "Server is banned from room"
        try:
            outcome = await self.events.on_receive_pdu(origin, room_id, pdu)
        except Exception:
            # One bad PDU must neither fail the transaction nor stop the others.
            logger.exception("handling a PDU from %s failed", origin)
            return None, None
        if outcome.status in ("dropped", "rejected"):
            logger.info(
                "PDU %s from %s %s: %s", outcome.event_id, origin, outcome.status, outcome.reason
            )
            return outcome.event_id, outcome.reason or outcome.status
        return outcome.event_id, None

    async def _event_id_of(self, room_id: str, pdu: JsonDict) -> str | None:
        """The ID of a PDU we will not process, for the answer (None if it has none)."""
        room_version = await self.events.store.get_room_version(room_id)
        if room_version is None:
            return None
        try:
            return make_event(dict(pdu), room_version).event_id
        except (EventValidationError, KeyError, TypeError, ValueError):
            return None

    async def _one_edu(self, origin: str, edu: Any) -> None:
        if not isinstance(edu, dict):
            logger.info("ignoring an EDU from %s: not a JSON object", origin)
            return
        edu_type = edu.get("edu_type")
        content = edu.get("content")
        handler = self.edu_handlers.get(edu_type) if isinstance(edu_type, str) else None
        if handler is None or not isinstance(content, dict):
            return
        if self.acl is not None:
            filtered = await self._acl_filter_edu(origin, edu_type, content)
            if filtered is None:
                return
            content = filtered
        try:
            await handler(origin, content)
        except Exception:
            logger.exception("handling a %s EDU from %s failed", edu_type, origin)

    async def _acl_filter_edu(
        self, origin: str, edu_type: Any, content: JsonDict
    ) -> JsonDict | None:
        """The EDU's content without what the rooms' ACLs deny ``origin`` (None: drop it)."""
        assert self.acl is not None
        if edu_type == "m.typing":
            room_id = content.get("room_id")
            if isinstance(room_id, str) and not await self.acl.is_allowed(origin, room_id):
                logger.info(
                    "ignoring typing from %s: the server ACL of %s denies it", origin, room_id
                )
                return None
        elif edu_type == "m.receipt":
            denied = [r for r in content if not await self.acl.is_allowed(origin, r)]
            if denied:
                logger.info(
                    "ignoring receipts from %s in %s: their server ACLs deny it", origin, denied
                )
                content = {r: v for r, v in content.items() if r not in denied}
                if not content:
                    return None
        return content


def register(router: Router, transactions: TransactionHandler) -> None:
    async def put_send(request: HttpRequest) -> JsonDict:
        body = request.json()
        origin = request.requester
        if body.get("origin") not in (None, origin):
            raise MatrixError(403, "M_FORBIDDEN", "transaction origin does not match the sender")
        return await transactions.on_transaction(origin, request.path_params["txnId"], body)

    router.add("PUT", "/_matrix/federation/v1/send/{txnId}", put_send, auth=Auth.FEDERATION)
