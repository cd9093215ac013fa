"""Serving a room's events to other servers, over real TLS between in-process Hearth
servers on SQLite and PostgreSQL: /event, /state, /state_ids, /event_auth, /backfill,
/get_missing_events and /timestamp_to_event, with the asking server's access and its
history visibility enforced."""

from __future__ import annotations

from typing import Any

import pytest

from federation.client import HttpResponseError
from tests.integration import federation_helpers
from tests.integration.federation_harness import (
    call,
    create_room,
    federation_get,
    federation_post,
    join_over_federation,
    ok,
    pdu_event,
    q,
    register,
    send_text,
)
from tests.integration.federation_helpers import FederatedServer, Federation

db_configs = federation_helpers.db_configs
federation = federation_helpers.federation

V1 = "/_matrix/federation/v1"


def refused(call_: Any) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as caught:
        call_()
    return caught.value


def room_version(server: FederatedServer, room_id: str) -> str:
    version = server.run_sync(lambda: server.homeserver.event_store.get_room_version(room_id))
    identifier: str = version.identifier
    return identifier


def test_reads_need_a_server_in_the_room(federation: Federation) -> None:
    a, c = federation.start("a"), federation.start("c")
    alice = register(a, "alice")
    room_id = create_room(a, alice, preset="public_chat")
    message = send_text(a, alice, room_id, "for members' servers only")

    attempts = [
        lambda: federation_get(c, a, f"{V1}/event/{q(message)}"),
        lambda: federation_get(c, a, f"{V1}/state/{q(room_id)}", {"event_id": message}),
        lambda: federation_get(c, a, f"{V1}/state_ids/{q(room_id)}", {"event_id": message}),
        lambda: federation_get(c, a, f"{V1}/event_auth/{q(room_id)}/{q(message)}"),
        lambda: federation_get(c, a, f"{V1}/backfill/{q(room_id)}", {"v": message, "limit": "5"}),
        lambda: federation_post(
            c,
            a,
            f"{V1}/get_missing_events/{q(room_id)}",
            {"earliest_events": [], "latest_events": [message]},
        ),
        lambda: federation_get(
            c, a, f"{V1}/timestamp_to_event/{q(room_id)}", {"ts": "0", "dir": "f"}
        ),
    ]
    for attempt in attempts:
        error = refused(attempt)
        assert (error.status, error.errcode) == (403, "M_FORBIDDEN"), error

    # A world-readable room may be read by any server.
    ok(
        call(
            a,
            alice,
            "PUT",
            f"/rooms/{q(room_id)}/state/m.room.history_visibility",
            {"history_visibility": "world_readable"},
        )
    )
    answer = federation_get(c, a, f"{V1}/event/{q(message)}")
    assert answer["pdus"][0]["content"]["body"] == "for members' servers only"

    # Unsigned requests never get that far.
    result = c.https("GET", f"{V1}/event/{q(message)}")
    assert result.status == 401 and result.json()["errcode"] == "M_UNAUTHORIZED"


def test_reads_apply_joined_history_visibility(federation: Federation) -> None:
    a, b = federation.start("a"), federation.start("b")
    alice, bob = register(a, "alice"), register(b, "bob")
    room_id = create_room(
        a,
        alice,
        preset="public_chat",
        initial_state=[
            {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}
        ],
    )
    before = [send_text(a, alice, room_id, f"before bob {i}") for i in range(3)]
    # B is not in the room yet: refused.
    assert refused(lambda: federation_get(b, a, f"{V1}/event/{q(before[0])}")).status == 403

    join_over_federation(b, bob, room_id, a)
    after = send_text(a, alice, room_id, "after bob")
    version = room_version(a, room_id)

    # /event: what B's users could not see comes redacted, the rest whole.
    hidden = federation_get(b, a, f"{V1}/event/{q(before[0])}")
    assert hidden["origin"] == a.server_name and len(hidden["pdus"]) == 1
    hidden_event = pdu_event(hidden["pdus"][0], version)
    assert hidden_event.event_id == before[0]
    assert hidden_event.content == {}
    shown = federation_get(b, a, f"{V1}/event/{q(after)}")
    assert shown["pdus"][0]["content"]["body"] == "after bob"

    # /backfill from the newest: newest first, hidden ones redacted, limit kept.
    backfill = federation_get(b, a, f"{V1}/backfill/{q(room_id)}", {"v": after, "limit": "6"})
    events = [pdu_event(p, version) for p in backfill["pdus"]]
    assert len(events) == 6
    assert events[0].event_id == after and events[0].content["body"] == "after bob"
    depths = [e.depth for e in events]
    assert depths == sorted(depths, reverse=True)
    by_id = {e.event_id: e for e in events}
    bob_join = next(e for e in events if e.type == "m.room.member" and e.state_key == bob.user_id)
    assert bob_join.content["membership"] == "join"
    for event_id in before:
        assert by_id[event_id].content == {}

    # Everything back to the create event, in one answer.
    whole = federation_get(b, a, f"{V1}/backfill/{q(room_id)}", {"v": after, "limit": "100"})
    types = [pdu_event(p, version).type for p in whole["pdus"]]
    assert types[-1] == "m.room.create" and types[0] == "m.room.message"

    # /get_missing_events: between what B has and the latest, oldest first, redacted
    # where B may not see.
    missing = federation_post(
        b,
        a,
        f"{V1}/get_missing_events/{q(room_id)}",
        {"earliest_events": [before[0]], "latest_events": [after], "limit": 10},
    )
    missing_events = [pdu_event(p, version) for p in missing["events"]]
    assert [e.event_id for e in missing_events] == [before[1], before[2], bob_join.event_id]
    assert missing_events[0].content == {} and missing_events[1].content == {}
    assert missing_events[2].content["membership"] == "join"
    limited = federation_post(
        b,
        a,
        f"{V1}/get_missing_events/{q(room_id)}",
        {"earliest_events": [], "latest_events": [after], "limit": 2},
    )
    assert [pdu_event(p, version).event_id for p in limited["events"]] == [
        before[2],
        bob_join.event_id,
    ]

    # /state_ids and /state at the message after the join: the state before it, with
    # its auth chain.
    state_ids = federation_get(b, a, f"{V1}/state_ids/{q(room_id)}", {"event_id": after})
    state = federation_get(b, a, f"{V1}/state/{q(room_id)}", {"event_id": after})
    state_events = [pdu_event(p, version) for p in state["pdus"]]
    assert sorted(e.event_id for e in state_events) == sorted(state_ids["pdu_ids"])
    assert bob_join.event_id in state_ids["pdu_ids"]
    pairs = {(e.type, e.state_key) for e in state_events}
    assert {("m.room.create", ""), ("m.room.member", alice.user_id)} <= pairs
    assert {("m.room.member", bob.user_id), ("m.room.history_visibility", "")} <= pairs
    chain_ids = {pdu_event(p, version).event_id for p in state["auth_chain"]}
    assert chain_ids == set(state_ids["auth_chain_ids"])
    create_id = next(e.event_id for e in state_events if e.type == "m.room.create")
    power_id = next(e.event_id for e in state_events if e.type == "m.room.power_levels")
    # (From room version 12 the create event is no event's auth event: it names the room.)
    assert power_id in chain_ids
    # At bob's join itself: the state before it has no bob.
    before_join = federation_get(
        b, a, f"{V1}/state_ids/{q(room_id)}", {"event_id": bob_join.event_id}
    )
    assert bob_join.event_id not in before_join["pdu_ids"]

    # /event_auth: the auth chain of the event.
    auth = federation_get(b, a, f"{V1}/event_auth/{q(room_id)}/{q(after)}")
    auth_events = [pdu_event(p, version) for p in auth["auth_chain"]]
    auth_types = {e.type for e in auth_events}
    assert {"m.room.power_levels", "m.room.member"} <= auth_types
    assert bob_join.event_id not in {e.event_id for e in auth_events}

    # /timestamp_to_event, both directions.
    after_ts = shown["pdus"][0]["origin_server_ts"]
    found = federation_get(
        b, a, f"{V1}/timestamp_to_event/{q(room_id)}", {"ts": str(after_ts + 1), "dir": "b"}
    )
    assert found == {"event_id": after, "origin_server_ts": after_ts}
    first = federation_get(b, a, f"{V1}/timestamp_to_event/{q(room_id)}", {"ts": "0", "dir": "f"})
    assert first["event_id"] == create_id
    nothing = refused(
        lambda: federation_get(
            b, a, f"{V1}/timestamp_to_event/{q(room_id)}", {"ts": str(after_ts + 10**9), "dir": "f"}
        )
    )
    assert (nothing.status, nothing.errcode) == (404, "M_NOT_FOUND")


def test_read_errors(federation: Federation) -> None:
    a, b = federation.start("a"), federation.start("b")
    alice, bob = register(a, "alice"), register(b, "bob")
    room_id = create_room(a, alice, preset="public_chat")
    join_over_federation(b, bob, room_id, a)
    message = send_text(a, alice, room_id, "hello")

    unknown = refused(lambda: federation_get(b, a, f"{V1}/event/{q('$nope')}"))
    assert (unknown.status, unknown.errcode) == (404, "M_NOT_FOUND")
    no_state = refused(
        lambda: federation_get(b, a, f"{V1}/state_ids/{q(room_id)}", {"event_id": "$nope"})
    )
    assert (no_state.status, no_state.errcode) == (404, "M_NOT_FOUND")
    missing_param = refused(lambda: federation_get(b, a, f"{V1}/state_ids/{q(room_id)}"))
    assert (missing_param.status, missing_param.errcode) == (400, "M_MISSING_PARAM")
    no_v = refused(lambda: federation_get(b, a, f"{V1}/backfill/{q(room_id)}", {"limit": "5"}))
    assert (no_v.status, no_v.errcode) == (400, "M_MISSING_PARAM")
    bad_dir = refused(
        lambda: federation_get(
            b, a, f"{V1}/timestamp_to_event/{q(room_id)}", {"ts": "0", "dir": "x"}
        )
    )
    assert (bad_dir.status, bad_dir.errcode) == (400, "M_INVALID_PARAM")
    bad_body = refused(
        lambda: federation_post(
            b, a, f"{V1}/get_missing_events/{q(room_id)}", {"latest_events": "nope"}
        )
    )
    assert bad_body.status == 400
    # An event of another room, asked for under this one.
    other = create_room(a, alice, preset="public_chat")
    join_over_federation(b, bob, other, a)
    wrong_room = refused(lambda: federation_get(b, a, f"{V1}/event_auth/{q(other)}/{q(message)}"))
    assert (wrong_room.status, wrong_room.errcode) == (404, "M_NOT_FOUND")
