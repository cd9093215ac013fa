"""``PUT /send`` handling without a network: one transaction per origin at a time (429 for
another while one is in hand, the same one waits for its answer), and rooms' server ACLs
applied per PDU and per room-scoped EDU."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.python.failure import Failure

from federation.inbound import PduOutcome
from federation.transport.send import TransactionHandler
from homeserver.errors import MatrixError
from homeserver.events.model import JsonDict

DENIED_ROOM = "!denied:hs.test"
OPEN_ROOM = "!open:hs.test"


class FakeStore:
    async def get_room_version(self, room_id: str) -> None:
        return None


class FakeEvents:
    """Records the PDUs handed over; each waits for ``gate`` when one is set."""

    def __init__(self) -> None:
        self.store = FakeStore()
        self.received: list[JsonDict] = []
        self.gate: defer.Deferred[None] | None = None

    async def on_receive_pdu(self, origin: str, room_id: str, pdu: JsonDict) -> PduOutcome:
        self.received.append(pdu)
        if self.gate is not None:
            await self.gate
        return PduOutcome(str(pdu.get("event_id")), "persisted")


class FakeAcl:
    async def is_allowed(self, origin: str, room_id: str) -> bool:
        return not (origin == "evil.test" and room_id == DENIED_ROOM)


def handler() -> tuple[TransactionHandler, FakeEvents]:
    events = FakeEvents()
    transactions = TransactionHandler(events)  # type: ignore[arg-type]
    transactions.acl = FakeAcl()  # type: ignore[assignment]
    return transactions, events


def pdu(room_id: str, event_id: str) -> JsonDict:
    return {"room_id": room_id, "event_id": event_id, "type": "m.room.message"}


def test_another_transaction_while_one_is_in_hand_gets_429() -> None:
    transactions, events = handler()
    events.gate = defer.Deferred()
    first = defer.ensureDeferred(
        transactions.on_transaction("b.test", "t1", {"pdus": [pdu(OPEN_ROOM, "$1")]})
    )
    assert not first.called
    second = defer.ensureDeferred(transactions.on_transaction("b.test", "t2", {"pdus": []}))
    errors: list[BaseException | None] = []

    def caught(failure: Failure) -> None:
        errors.append(failure.value)

    second.addErrback(caught)
    assert len(errors) == 1 and isinstance(errors[0], MatrixError)
    assert (errors[0].status, errors[0].errcode) == (429, "M_LIMIT_EXCEEDED")
    # Another origin is not held up, and a retry of t1 waits for t1's answer.
    other = defer.ensureDeferred(transactions.on_transaction("c.test", "t2", {"pdus": []}))
    assert other.called
    retry = defer.ensureDeferred(
        transactions.on_transaction("b.test", "t1", {"pdus": [pdu(OPEN_ROOM, "$1")]})
    )
    assert not retry.called
    events.gate.callback(None)
    assert first.result == {"pdus": {"$1": {}}}
    assert retry.result == {"pdus": {"$1": {}}}
    assert len(events.received) == 1
    # Once t1 is done, b may send the next one.
    third = defer.ensureDeferred(transactions.on_transaction("b.test", "t3", {"pdus": []}))
    assert third.result == {"pdus": {}}


def test_acl_drops_pdus_of_denied_rooms_only() -> None:
    transactions, events = handler()
    body = {"pdus": [pdu(DENIED_ROOM, "$d"), pdu(OPEN_ROOM, "$o")]}
    answer = defer.ensureDeferred(transactions.on_transaction("evil.test", "t", body)).result
    # The event ID of a PDU in a room we do not know cannot be worked out: left out.
    assert answer == {"pdus": {"$o": {}}}
    assert [p["event_id"] for p in events.received] == ["$o"]
    # The same room is open to another server.
    answer = defer.ensureDeferred(transactions.on_transaction("good.test", "t", body)).result
    assert answer == {"pdus": {"$d": {}, "$o": {}}}


@pytest.mark.parametrize("origin", ["evil.test", "good.test"])
def test_acl_filters_typing_and_receipts(origin: str) -> None:
    transactions, _ = handler()
    seen: list[tuple[str, Any]] = []

    async def record(edu_type: str, content: JsonDict) -> None:
        seen.append((edu_type, content))

    async def on_typing(o: str, content: JsonDict) -> None:
        await record("m.typing", content)

    async def on_receipt(o: str, content: JsonDict) -> None:
        await record("m.receipt", content)

    transactions.register_edu_handler("m.typing", on_typing)
    transactions.register_edu_handler("m.receipt", on_receipt)
    receipts: JsonDict = {DENIED_ROOM: {"m.read": {}}, OPEN_ROOM: {"m.read": {}}}
    edus = [
        {"edu_type": "m.typing", "content": {"room_id": DENIED_ROOM, "typing": True}},
        {"edu_type": "m.typing", "content": {"room_id": OPEN_ROOM, "typing": True}},
        {"edu_type": "m.receipt", "content": receipts},
        {"edu_type": "m.receipt", "content": {DENIED_ROOM: {"m.read": {}}}},
    ]
    assert defer.ensureDeferred(transactions.on_transaction(origin, "t", {"edus": edus})).called
    if origin == "evil.test":
        assert seen == [
            ("m.typing", {"room_id": OPEN_ROOM, "typing": True}),
            ("m.receipt", {OPEN_ROOM: {"m.read": {}}}),
        ]
    else:
        assert seen == [
            ("m.typing", {"room_id": DENIED_ROOM, "typing": True}),
            ("m.typing", {"room_id": OPEN_ROOM, "typing": True}),
            ("m.receipt", receipts),
            ("m.receipt", {DENIED_ROOM: {"m.read": {}}}),
        ]
