"""``PUT /_matrix/federation/v1/send/{txnId}``: another server's transaction of PDUs and EDUs.

Transactions from one origin are handled one at a time, in order; a retried transaction
(same origin and ID) gets the answer the first one got. A PDU that fails its checks is
reported in the answer's ``pdus`` map and never fails the transaction (spec). EDUs are
handed to the handler registered for their type; unknown types are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from federation.inbound import FederationEventHandler
from homeserver.errors import MatrixError, bad_json
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
            raise bad_json("pdus and edus must be lists")
        if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
            raise MatrixError(
                400,
                "M_BAD_JSON",
                f"a transaction carries at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs",
            )
        async with self._origins.lock(origin):
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
            return None, None
        room_id = pdu.get("room_id")
        if not isinstance(room_id, str):
            return None, None
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

    async def _one_edu(self, origin: str, edu: Any) -> None:
        if not isinstance(edu, dict):
            return
        edu_type = edu.get("edu_type")
        content = edu.get("content")
        handler = self.edu_handlers.get(edu_type) if isinstance(edu_type, str) else None
        if handler is None or not isinstance(content, dict):
            return
        try:
            await handler(origin, content)
        except Exception:
            logger.exception("handling a %s EDU from %s failed", edu_type, origin)


def register(router: Router, transactions: TransactionHandler) -> None:
    async def put_send(request: HttpRequest) -> JsonDict:
        body = request.json()
        origin = request.requester
        if body.get("origin") not in (None, origin):
            raise MatrixError(403, "M_FORBIDDEN", "transaction origin does not match the sender")
        return await transactions.on_transaction(origin, request.path_params["txnId"], body)

    router.add("PUT", "/_matrix/federation/v1/send/{txnId}", put_send, auth=Auth.FEDERATION)
