"""The local event path: build, authorise, sign, persist in one transaction, read back."""

from __future__ import annotations

from typing import Any

import pytest
from signedjson.key import generate_signing_key

from homeserver.errors import MatrixError
from homeserver.events.signing import verify_event_signatures, verify_key_for
from homeserver.handlers.event_creation import EventCreator, EventSpec, request_hash
from homeserver.notifier import Notifier, RoomEventsNotice
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from storage.events import EventStore, TxnRecord
from storage.state import MAX_CHAIN_LENGTH

ALICE = "@alice:hs.test"
BOB = "@bob:hs.test"
CLOCK = [1_700_000_000_000]


def now_ms() -> int:
    CLOCK[0] += 1
    return CLOCK[0]


def initial_specs(version: str) -> list[EventSpec]:
    room_version = KNOWN_ROOM_VERSIONS[version]
    create_content: dict[str, Any] = {"room_version": version}
    if not room_version.implicit_room_creator:
        create_content["creator"] = ALICE
    # v12 creators have unlimited power and must not be listed in the users map.
    users = {} if room_version.creators_have_infinite_power else {ALICE: 100}
    return [
        EventSpec("m.room.create", ALICE, create_content, ""),
        EventSpec("m.room.member", ALICE, {"membership": "join"}, ALICE),
        EventSpec("m.room.power_levels", ALICE, {"users": users, "state_default": 50}, ""),
        EventSpec("m.room.join_rules", ALICE, {"join_rule": "public"}, ""),
    ]


def make_creator(database: Any) -> tuple[EventCreator, list[RoomEventsNotice], Any]:
    key = generate_signing_key("t1")
    notifier = Notifier()
    notices: list[RoomEventsNotice] = []
    notifier.add_listener(notices.append)
    store = EventStore(database)
    creator = EventCreator(
        server_name="hs.test", signing_key=key, store=store, notifier=notifier, now_ms=now_ms
    )
    return creator, notices, key


@pytest.mark.parametrize("version", ["1", "3", "10", "11", "12"])
def test_create_room_send_and_read_back(database: Any, run_sync: Any, version: str) -> None:
    creator, notices, key = make_creator(database)

    async def scenario() -> None:
        await creator.store.load_positions()
        room_id, events = await creator.create_room(
            KNOWN_ROOM_VERSIONS[version], ALICE, initial_specs(version)
        )
        assert [e.type for e in events][:2] == ["m.room.create", "m.room.member"]
        assert events[1].prev_event_ids == (events[0].event_id,)
        state = await creator.store.get_current_state_ids(room_id)
        assert state[("m.room.member", ALICE)] == events[1].event_id
        assert len(state) == 4
        message = await creator.send(
            room_id, EventSpec("m.room.message", ALICE, {"msgtype": "m.text", "body": "hi"})
        )
        assert message.room_id == room_id
        assert message.prev_event_ids == (events[-1].event_id,)
        keys = {("hs.test", "ed25519:t1"): verify_key_for(key, 2**62)}
        verify_event_signatures(message, keys)
        # A fresh store reads the same from the database, not from caches.
        fresh = EventStore(database)
        await fresh.load_positions()
        assert fresh.stream_ids.current_token() == creator.store.stream_ids.current_token()
        read = await fresh.get_event(message.event_id)
        assert read is not None and read.pdu == {
            k: v for k, v in message.pdu.items() if k != "unsigned"
        }
        head = await fresh.get_room_head(room_id)
        assert head is not None and head.forward_extremities == (message.event_id,)
        assert head.state == state
        assert await fresh.get_state_ids_after_event(message.event_id) == state
        assert await fresh.get_rooms_for_user(ALICE) == [room_id]

    run_sync(scenario())
    assert [len(n.events) for n in notices] == [4, 1]
    assert notices[-1].stream_position == 5


def test_unauthorised_event_is_refused_and_nothing_written(database: Any, run_sync: Any) -> None:
    creator, _, _ = make_creator(database)

    async def scenario() -> None:
        await creator.store.load_positions()
        room_id, _ = await creator.create_room(
            KNOWN_ROOM_VERSIONS["12"], ALICE, initial_specs("12")
        )
        before = await database.execute("count", "SELECT COUNT(*) FROM events")
        with pytest.raises(MatrixError) as caught:
            await creator.send(room_id, EventSpec("m.room.message", BOB, {"body": "x"}))
        assert caught.value.errcode == "M_FORBIDDEN"
        with pytest.raises(MatrixError) as too_big:
            await creator.send(room_id, EventSpec("m.room.message", ALICE, {"body": "x" * 70_000}))
        assert (too_big.value.status, too_big.value.errcode) == (413, "M_TOO_LARGE")
        with pytest.raises(MatrixError) as unknown:
            await creator.send("!nope:hs.test", EventSpec("m.room.message", ALICE, {}))
        assert unknown.value.errcode == "M_NOT_FOUND"
        after = await database.execute("count", "SELECT COUNT(*) FROM events")
        assert before == after

    run_sync(scenario())


def test_transaction_ids_and_duplicate_state(database: Any, run_sync: Any) -> None:
    creator, _, _ = make_creator(database)

    async def scenario() -> None:
        await creator.store.load_positions()
        room_id, _ = await creator.create_room(
            KNOWN_ROOM_VERSIONS["10"], ALICE, initial_specs("10")
        )
        spec = EventSpec("m.room.message", ALICE, {"body": "once"})
        txn = TxnRecord(ALICE, "DEV", "t1", request_hash("send", spec.content))
        first = await creator.send(room_id, spec, txn=txn)
        again = await creator.send(room_id, spec, txn=txn)
        assert again.event_id == first.event_id
        reused = TxnRecord(ALICE, "DEV", "t1", request_hash("send", {"body": "other"}))
        with pytest.raises(MatrixError) as caught:
            await creator.send(room_id, EventSpec("m.room.message", ALICE, {}), txn=reused)
        assert caught.value.errcode == "M_INVALID_PARAM"
        topic = EventSpec("m.room.topic", ALICE, {"topic": "t"}, "")
        first_topic = await creator.send(room_id, topic)
        assert (await creator.send(room_id, topic)).event_id == first_topic.event_id
        rows = await database.execute("count", "SELECT COUNT(*) FROM events")
        assert rows[0][0] == 4 + 2

    run_sync(scenario())


def test_long_state_histories_stay_readable(database: Any, run_sync: Any) -> None:
    creator, _, _ = make_creator(database)

    async def scenario() -> None:
        await creator.store.load_positions()
        room_id, _ = await creator.create_room(
            KNOWN_ROOM_VERSIONS["12"], ALICE, initial_specs("12")
        )
        sent = []
        for i in range(MAX_CHAIN_LENGTH + 10):
            sent.append(
                await creator.send(
                    room_id, EventSpec("org.example.state", ALICE, {"i": i}, str(i % 7))
                )
            )
        fresh = EventStore(database)
        expected = await creator.store.get_current_state_ids(room_id)
        assert await fresh.get_state_ids_after_event(sent[-1].event_id) == expected
        middle = await fresh.get_state_ids_after_event(sent[20].event_id)
        assert (
            middle is not None and middle[("org.example.state", str(20 % 7))] == sent[20].event_id
        )
        rows = await database.execute("max_chain", "SELECT MAX(chain_length) FROM state_groups")
        assert rows[0][0] <= MAX_CHAIN_LENGTH

    run_sync(scenario(), timeout=120)


def test_identical_v12_rooms_in_the_same_millisecond_get_different_ids(
    database: Any, run_sync: Any
) -> None:
    key = generate_signing_key("t1")
    store = EventStore(database)
    creator = EventCreator(
        server_name="hs.test",
        signing_key=key,
        store=store,
        notifier=Notifier(),
        now_ms=lambda: 1_700_000_000_000,
    )

    async def scenario() -> None:
        await store.load_positions()
        first, _ = await creator.create_room(KNOWN_ROOM_VERSIONS["12"], ALICE, initial_specs("12"))
        second, _ = await creator.create_room(KNOWN_ROOM_VERSIONS["12"], ALICE, initial_specs("12"))
        assert first != second
        assert await store.get_room_head(second) is not None

    run_sync(scenario())
