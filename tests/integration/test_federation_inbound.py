"""Events from another server through the receipt checks, on SQLite and PostgreSQL.

The remote server is played by a second signing key: its PDUs are real, signed events,
handed to the inbound pipeline as a /send transaction would hand them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from signedjson.key import generate_signing_key

from federation.inbound import FederationEventHandler, NoFetcher
from homeserver.auth.selection import select_auth_events
from homeserver.events.hashing import event_reference, make_event
from homeserver.events.model import Event, JsonDict
from homeserver.events.signing import ServerVerifyKey, verify_key_for
from homeserver.handlers.event_creation import EventCreator, EventSpec
from homeserver.notifier import Notifier
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion
from storage.events import EventStore

ALICE = "@alice:hs.test"
BOB = "@bob:remote.test"
CLOCK = [1_700_000_000_000]
LOCAL_KEY = generate_signing_key("l1")
REMOTE_KEY = generate_signing_key("r1")


def now_ms() -> int:
    CLOCK[0] += 1
    return CLOCK[0]


class StaticKeys:
    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], ServerVerifyKey] = {
            ("hs.test", "ed25519:l1"): verify_key_for(LOCAL_KEY, 2**62),
            ("remote.test", "ed25519:r1"): verify_key_for(REMOTE_KEY, 2**62),
        }

    async def get_verify_keys(
        self, requests: Mapping[str, set[str]], minimum_valid_until_ts: int
    ) -> dict[tuple[str, str], ServerVerifyKey]:
        return self.keys


def remote_pdu(
    room_version: RoomVersion,
    room_id: str,
    prev: list[Event],
    state: Mapping[tuple[str, str], Event],
    event_type: str,
    content: JsonDict,
    state_key: str | None = None,
    sender: str = BOB,
    key: Any = REMOTE_KEY,
) -> JsonDict:
    from homeserver.events.signing import sign_event

    auth_ids = select_auth_events(
        room_version,
        event_type,
        sender,
        state_key,
        content,
        {k: e.event_id for k, e in state.items()},
    )
    by_id = {e.event_id: e for e in state.values()}
    v1 = room_version.event_format is EventFormat.V1
    pdu: JsonDict = {
        "type": event_type,
        "sender": sender,
        "room_id": room_id,
        "content": content,
        "depth": max(e.depth for e in prev) + 1,
        "origin_server_ts": now_ms(),
        "prev_events": [event_reference(e) if v1 else e.event_id for e in prev],
        "auth_events": [event_reference(by_id[a]) if v1 else a for a in auth_ids],
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    if not room_version.implicit_room_creator:
        pdu["origin"] = "remote.test"
    if room_version.uses_opaque_event_ids:
        pdu["event_id"] = f"$r{CLOCK[0]}:remote.test"
    sign_event(pdu, "remote.test", key, room_version)
    return pdu


async def setup(database: Any, version: str) -> tuple[EventCreator, FederationEventHandler, str]:
    notifier = Notifier()
    store = EventStore(database)
    await store.load_positions()
    creator = EventCreator(
        server_name="hs.test",
        signing_key=LOCAL_KEY,
        store=store,
        notifier=notifier,
        now_ms=now_ms,
    )
    handler = FederationEventHandler(
        store=store,
        notifier=notifier,
        room_locks=creator.room_locks,
        keys=StaticKeys(),
        fetcher=NoFetcher(),
        now_ms=now_ms,
    )
    rv = KNOWN_ROOM_VERSIONS[version]
    create: JsonDict = {"room_version": version}
    if not rv.implicit_room_creator:
        create["creator"] = ALICE
    users = {} if rv.creators_have_infinite_power else {ALICE: 100}
    room_id, _ = await creator.create_room(
        rv,
        ALICE,
        [
            EventSpec("m.room.create", ALICE, create, ""),
            EventSpec("m.room.member", ALICE, {"membership": "join"}, ALICE),
            EventSpec("m.room.power_levels", ALICE, {"users": users}, ""),
            EventSpec("m.room.join_rules", ALICE, {"join_rule": "public"}, ""),
        ],
    )
    return creator, handler, room_id


async def state_events(store: EventStore, room_id: str) -> dict[tuple[str, str], Event]:
    ids = await store.get_current_state_ids(room_id)
    events = await store.get_events(ids.values())
    return {k: events[v] for k, v in ids.items()}


async def tip(store: EventStore, room_id: str) -> list[Event]:
    head = await store.get_room_head(room_id)
    assert head is not None
    return list((await store.get_events(head.forward_extremities)).values())


@pytest.mark.parametrize("version", ["1", "10", "12"])
def test_remote_join_message_and_bad_pdus(database: Any, run_sync: Any, version: str) -> None:
    async def scenario() -> None:
        creator, handler, room_id = await setup(database, version)
        store = creator.store
        rv = KNOWN_ROOM_VERSIONS[version]
        state = await state_events(store, room_id)
        join = remote_pdu(
            rv,
            room_id,
            await tip(store, room_id),
            state,
            "m.room.member",
            {"membership": "join"},
            BOB,
        )
        outcome = await handler.on_receive_pdu("remote.test", room_id, join)
        assert outcome.status == "persisted", outcome
        state = await state_events(store, room_id)
        assert state[("m.room.member", BOB)].membership == "join"

        message = remote_pdu(
            rv,
            room_id,
            await tip(store, room_id),
            state,
            "m.room.message",
            {"body": "hello from afar"},
        )
        assert (await handler.on_receive_pdu("remote.test", room_id, message)).status == (
            "persisted"
        )
        again = await handler.on_receive_pdu("remote.test", room_id, message)
        assert again.status == "duplicate"

        # Signed with a key the remote server does not have: dropped, nothing stored.
        forged = remote_pdu(
            rv,
            room_id,
            await tip(store, room_id),
            state,
            "m.room.message",
            {"body": "forged"},
            key=generate_signing_key("r1"),
        )
        dropped = await handler.on_receive_pdu("remote.test", room_id, forged)
        assert dropped.status == "dropped" and "signatures" in (dropped.reason or "")
        assert dropped.event_id is not None and await store.get_event(dropped.event_id) is None

        # Malformed: dropped.
        malformed = dict(message)
        malformed["depth"] = "deep"
        assert (await handler.on_receive_pdu("remote.test", room_id, malformed)).status == (
            "dropped"
        )

        # Content changed after signing: the hash fails, the event is kept redacted.
        tampered = remote_pdu(
            rv, room_id, await tip(store, room_id), state, "m.room.message", {"body": "original"}
        )
        tampered["content"] = {"body": "tampered"}
        kept = await handler.on_receive_pdu("remote.test", room_id, tampered)
        assert kept.status == "persisted" and kept.event_id is not None
        stored = await store.get_event(kept.event_id)
        assert stored is not None and stored.content == {}

        # A user who never joined may not speak: rejected, never current.
        stranger = remote_pdu(
            rv,
            room_id,
            await tip(store, room_id),
            state,
            "m.room.topic",
            {"topic": "hijack"},
            "",
            sender="@eve:remote.test",
        )
        rejected = await handler.on_receive_pdu("remote.test", room_id, stranger)
        assert rejected.status == "rejected"
        assert ("m.room.topic", "") not in await store.get_current_state_ids(room_id)

    run_sync(scenario())


@pytest.mark.parametrize("version", ["10", "12"])
def test_fork_then_local_event_merges_and_soft_fail(
    database: Any, run_sync: Any, version: str
) -> None:
    async def scenario() -> None:
        creator, handler, room_id = await setup(database, version)
        store = creator.store
        rv = KNOWN_ROOM_VERSIONS[version]
        state = await state_events(store, room_id)
        join = remote_pdu(
            rv,
            room_id,
            await tip(store, room_id),
            state,
            "m.room.member",
            {"membership": "join"},
            BOB,
        )
        assert (await handler.on_receive_pdu("remote.test", room_id, join)).status == "persisted"
        fork_point = await tip(store, room_id)
        state_at_fork = await state_events(store, room_id)

        # Alice changes the topic locally; concurrently Bob sends from the fork point.
        topic = await creator.send(room_id, EventSpec("m.room.topic", ALICE, {"topic": "t"}, ""))
        concurrent = remote_pdu(
            rv, room_id, fork_point, state_at_fork, "m.room.message", {"body": "concurrent"}
        )
        outcome = await handler.on_receive_pdu("remote.test", room_id, concurrent)
        assert outcome.status == "persisted"
        head = await store.get_room_head(room_id)
        assert head is not None and set(head.forward_extremities) == {
            topic.event_id,
            outcome.event_id,
        }
        assert head.state[("m.room.topic", "")] == topic.event_id

        # The next local event points at both and carries the merged state.
        merged = await creator.send(room_id, EventSpec("m.room.message", ALICE, {"body": "m"}))
        assert set(merged.prev_event_ids) == {topic.event_id, outcome.event_id}
        after = await store.get_state_ids_after_event(merged.event_id)
        assert after is not None and after[("m.room.topic", "")] == topic.event_id
        assert after[("m.room.member", BOB)] == join_id(join, rv)
        fresh = EventStore(database)
        assert await fresh.get_state_ids_after_event(merged.event_id) == after

        # Alice bans Bob; Bob then sends from before the ban: allowed by the state
        # before it, not by the room now: soft-failed and not an extremity.
        before_ban = await tip(store, room_id)
        state_before_ban = await state_events(store, room_id)
        await creator.send(room_id, EventSpec("m.room.member", ALICE, {"membership": "ban"}, BOB))
        late = remote_pdu(
            rv, room_id, before_ban, state_before_ban, "m.room.message", {"body": "too late"}
        )
        soft = await handler.on_receive_pdu("remote.test", room_id, late)
        assert soft.status == "soft_failed"
        head = await store.get_room_head(room_id)
        assert head is not None and soft.event_id not in head.forward_extremities
        assert head.state[("m.room.member", BOB)] != join_id(join, rv)

    run_sync(scenario())


def join_id(pdu: JsonDict, room_version: RoomVersion) -> str:
    return make_event(dict(pdu), room_version).event_id
