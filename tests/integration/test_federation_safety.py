"""A misbehaving remote server, on SQLite and PostgreSQL, over real TLS.

Server ``a`` is the one under test; ``b`` (named 127.0.0.2:<port>, so that a server ACL can
tell it from ``a``) is a real Hearth whose user joined ``a``'s room, and plays the bad
server: its transactions are hand-made PDUs signed with its own key (or not), sent with its
own federation client, so they pass X-Matrix authentication like any real server's. In
every case ``a``'s room state (its client ``/state``) is unchanged, ``a`` keeps answering
with Matrix error JSON (never a 500) and logs why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from signedjson.key import generate_signing_key
from twisted.internet import defer, task

from federation.client import HttpResponseError
from homeserver.auth.selection import select_auth_events
from homeserver.events.hashing import make_event
from homeserver.events.model import JsonDict
from homeserver.events.signing import sign_event
from homeserver.room_versions import EventFormat
from tests.integration import federation_helpers
from tests.integration.federation_harness import call, create_room, ok, q, send_text, wait_for
from tests.integration.federation_helpers import FederatedServer, Federation
from tests.integration.harness import RegisteredUser

db_configs = federation_helpers.db_configs
federation = federation_helpers.federation

LOOPBACK = ["127.0.0.0/8"]
V1 = "/_matrix/federation/v1"


@dataclass
class Scene:
    a: FederatedServer  # under test
    b: FederatedServer  # the remote that misbehaves
    alice: RegisteredUser  # on a, created the room
    bob: RegisteredUser  # on b, joined it over federation
    room_id: str


def start_scene(federation: Federation, **a_config: Any) -> Scene:
    a = federation.start("a", ip_range_whitelist=LOOPBACK, **a_config)
    b = federation.start("b", host="127.0.0.2", ip_range_whitelist=LOOPBACK)
    alice = a.register_user("alice")
    bob = b.register_user("bob")
    room_id = create_room(a, alice, preset="public_chat")
    ok(call(b, bob, "POST", f"/join/{q(room_id)}?server_name={q(a.server_name)}"))
    wait_for(lambda: bob.user_id in joined_members(a, alice, room_id), "bob's join on a")
    return Scene(a, b, alice, bob, room_id)


@pytest.fixture
def scene(federation: Federation) -> Scene:
    return start_scene(federation)


def joined_members(server: FederatedServer, user: RegisteredUser, room_id: str) -> set[str]:
    joined = ok(call(server, user, "GET", f"/rooms/{q(room_id)}/joined_members"))["joined"]
    return set(joined)


def room_state(s: Scene) -> dict[tuple[str, str], str]:
    """The room's state as ``a``'s client API shows it."""
    events = ok(call(s.a, s.alice, "GET", f"/rooms/{q(s.room_id)}/state"))
    return {(e["type"], e["state_key"]): e["event_id"] for e in events}


def forge(
    s: Scene,
    event_type: str,
    content: JsonDict,
    *,
    state_key: str | None = None,
    sender: str | None = None,
    room_id: str | None = None,
    signing_key: Any = None,
) -> JsonDict:
    """A PDU as ``b`` would send it on top of ``a``'s view of the room, signed by ``b``
    (with ``signing_key`` instead of its real key if given)."""
    sender = sender or s.bob.user_id
    store = s.a.homeserver.event_store
    head = s.a.run_sync(lambda: store.get_room_head(s.room_id))
    assert head is not None and head.room_version.event_format is not EventFormat.V1
    pdu: JsonDict = {
        "type": event_type,
        "sender": sender,
        "room_id": room_id or s.room_id,
        "content": content,
        "depth": head.max_depth + 1,
        "origin_server_ts": int(time.time() * 1000),
        "prev_events": list(head.forward_extremities),
        "auth_events": select_auth_events(
            head.room_version, event_type, sender, state_key, content, head.state
        ),
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    if not head.room_version.implicit_room_creator:
        pdu["origin"] = s.b.server_name
    key = signing_key or s.b.homeserver.server_keys.signing_key
    sign_event(pdu, s.b.server_name, key, head.room_version)
    return pdu


def event_id_of(s: Scene, pdu: JsonDict) -> str:
    store = s.a.homeserver.event_store
    room_version = s.a.run_sync(lambda: store.get_room_version(s.room_id))
    return make_event(dict(pdu), room_version).event_id


class Answer:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body


def send_txn(s: Scene, pdus: Iterable[Any], edus: Iterable[Any] = ()) -> Answer:
    """``PUT /send`` from ``b`` to ``a``; retried while ``b``'s own sender has a
    transaction in hand there (429: one transaction per origin at a time)."""
    client = s.b.homeserver.federation_client
    body = {
        "origin": s.b.server_name,
        "origin_server_ts": int(time.time() * 1000),
        "pdus": list(pdus),
        "edus": list(edus),
    }
    path = f"{V1}/send/t{time.monotonic_ns()}"
    for _ in range(50):
        try:
            return Answer(
                200, s.b.run_sync(lambda: client.put_json(s.a.server_name, path, data=body))
            )
        except HttpResponseError as e:
            if e.status != 429:
                return Answer(e.status, e.response_json)
        time.sleep(0.1)
    raise AssertionError("a kept refusing b's transactions with 429")


def assert_alive(s: Scene, state_before: dict[tuple[str, str], str]) -> None:
    assert room_state(s) == state_before
    version = s.b.https("GET", f"{V1}/version")
    assert version.status == 200
    assert s.a.https("GET", f"{V1}/version").status == 200


def client_event(s: Scene, event_id: str) -> Any:
    return call(s.a, s.alice, "GET", f"/rooms/{q(s.room_id)}/event/{q(event_id)}")


def logged(caplog: pytest.LogCaptureFixture, *fragments: str) -> bool:
    return any(all(f in r.getMessage() for f in fragments) for r in caplog.records)


def test_bad_pdus_never_change_the_room(scene: Scene, caplog: pytest.LogCaptureFixture) -> None:
    s = scene
    caplog.set_level(logging.INFO, logger="federation")
    before = room_state(s)
    topic = ("m.room.topic", "")

    # A signature by a key that is not b's (same key ID): dropped.
    forged_key = generate_signing_key(s.b.homeserver.server_keys.signing_key.version)
    bad_sig = forge(s, "m.room.topic", {"topic": "bad sig"}, state_key="", signing_key=forged_key)
    answer = send_txn(s, [bad_sig])
    assert answer.status == 200
    assert "signature" in answer.body["pdus"][event_id_of(s, bad_sig)]["error"]
    assert logged(caplog, event_id_of(s, bad_sig), "dropped", "signature")
    assert_alive(s, before)

    # An event b may not send (bob has power 0; the topic needs 50): rejected.
    not_allowed = forge(s, "m.room.topic", {"topic": "not allowed"}, state_key="")
    answer = send_txn(s, [not_allowed])
    assert answer.body["pdus"][event_id_of(s, not_allowed)]["error"]
    assert logged(caplog, "rejecting", event_id_of(s, not_allowed))
    assert topic not in room_state(s)
    # Nor may bob raise himself to 100.
    levels_id = before[("m.room.power_levels", "")]
    levels = ok(client_event(s, levels_id))["content"]
    levels["users"] = {**levels.get("users", {}), s.bob.user_id: 100}
    grab = forge(s, "m.room.power_levels", levels, state_key="")
    answer = send_txn(s, [grab])
    assert answer.body["pdus"][event_id_of(s, grab)]["error"]
    assert logged(caplog, "rejecting", event_id_of(s, grab))
    assert_alive(s, before)

    # An event of a's own user (who may set the topic), signed only by b: dropped.
    impostor = forge(s, "m.room.topic", {"topic": "impostor"}, state_key="", sender=s.alice.user_id)
    answer = send_txn(s, [impostor])
    assert "not signed by" in answer.body["pdus"][event_id_of(s, impostor)]["error"]
    assert logged(caplog, event_id_of(s, impostor), "not signed by", s.a.server_name)
    # Nor for a user of a third server.
    stranger = forge(s, "m.room.message", {"msgtype": "m.text", "body": "x"}, sender="@m:c.test")
    answer = send_txn(s, [stranger])
    assert "not signed by c.test" in answer.body["pdus"][event_id_of(s, stranger)]["error"]
    assert client_event(s, event_id_of(s, stranger)).status == 404
    assert_alive(s, before)

    # Content changed after signing (the signature covers the redacted form only): kept,
    # redacted.
    tampered = forge(s, "m.room.message", {"msgtype": "m.text", "body": "signed"})
    tampered["content"] = {"msgtype": "m.text", "body": "tampered"}
    answer = send_txn(s, [tampered])
    tampered_id = event_id_of(s, tampered)
    assert answer.body["pdus"][tampered_id] == {}
    stored = ok(client_event(s, tampered_id))
    assert stored["content"] == {}
    assert logged(caplog, "content hash mismatch", tampered_id)
    assert_alive(s, before)

    # Over 64 KiB: never enters the room.
    big = forge(s, "m.room.message", {"msgtype": "m.text", "body": "x" * 70_000})
    answer = send_txn(s, [big])
    assert answer.status == 200
    assert client_event(s, event_id_of(s, big)).status == 404
    assert logged(caplog, "dropped", "65536") or logged(caplog, "rejecting", "size")
    assert_alive(s, before)

    # Things that are no PDU at all, and PDUs for rooms that are not this one.
    good = forge(s, "m.room.message", {"msgtype": "m.text", "body": "still here"})
    unknown_room = forge(s, "m.room.message", {"msgtype": "m.text"}, room_id="!nope:c.test")
    junk: list[Any] = [1, "pdu", None, [], {"type": "m.room.message"}, {"room_id": 7}]
    answer = send_txn(s, [*junk, unknown_room, good])
    assert answer.status == 200
    assert answer.body["pdus"] == {event_id_of(s, good): {}}
    assert logged(caplog, "not a JSON object")
    assert logged(caplog, "no room_id")
    assert logged(caplog, "dropped", "unknown room !nope:c.test")
    assert ok(client_event(s, event_id_of(s, good)))["content"]["body"] == "still here"
    assert_alive(s, before)

    # A PDU that is not JSON-shaped like a PDU at all (fields of the wrong types).
    malformed = forge(s, "m.room.message", {"msgtype": "m.text", "body": "m"})
    malformed["prev_events"] = "not a list"
    answer = send_txn(s, [malformed])
    assert answer.status == 200
    assert logged(caplog, "dropped", "malformed")
    assert_alive(s, before)

    # Nothing of this reached a's logs as a crash.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_oversized_and_malformed_transactions(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    s = scene
    caplog.set_level(logging.INFO, logger="federation")
    before = room_state(s)

    many = [forge(s, "m.room.message", {"msgtype": "m.text", "body": str(i)}) for i in range(51)]
    answer = send_txn(s, many)
    assert answer.status == 400
    assert answer.body["errcode"] == "M_BAD_JSON"
    assert logged(caplog, "refusing transaction", "51 PDUs")
    for pdu in many[:3]:
        assert client_event(s, event_id_of(s, pdu)).status == 404

    edus = [{"edu_type": "m.typing", "content": {}} for _ in range(101)]
    answer = send_txn(s, [], edus)
    assert answer.status == 400
    assert answer.body["errcode"] == "M_BAD_JSON"
    assert logged(caplog, "refusing transaction", "101 EDUs")

    # pdus that is not a list.
    client = s.b.homeserver.federation_client
    with pytest.raises(HttpResponseError) as error:
        s.b.run_sync(
            lambda: client.put_json(
                s.a.server_name, f"{V1}/send/notalist", data={"pdus": {"a": 1}, "edus": []}
            )
        )
    assert error.value.status == 400 and error.value.errcode == "M_BAD_JSON"
    assert logged(caplog, "refusing transaction notalist", "not a list")

    # Bodies that are not JSON, or not an object: refused before anything else.
    header = (
        f'X-Matrix origin="{s.b.server_name}",destination="{s.a.server_name}",'
        'key="ed25519:x",sig="x"'
    )
    for body in (b"{not json", b"[1, 2]", b"\xff\xfe", b""):
        result = s.a.https(
            "PUT",
            f"{V1}/send/raw{time.monotonic_ns()}",
            body,
            {"Authorization": header, "Content-Type": "application/json"},
        )
        assert result.status == 400, result.body
        assert result.json()["errcode"] in ("M_NOT_JSON", "M_BAD_JSON")
    assert logged(caplog, "refusing a request from", s.b.server_name)

    assert_alive(s, before)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_server_acl(federation: Federation, caplog: pytest.LogCaptureFixture) -> None:
    s = start_scene(federation)
    c = federation.start("c", ip_range_whitelist=LOOPBACK)
    caplog.set_level(logging.INFO, logger="federation")
    b_client = s.b.homeserver.federation_client
    c_client = c.homeserver.federation_client
    latest = room_state(s)[("m.room.member", s.bob.user_id)]
    carol = f"@carol:{s.b.server_name}"

    def b_get(path: str, args: dict[str, Any] | None = None) -> Any:
        return s.b.run_sync(lambda: b_client.get_json(s.a.server_name, path, args=args))

    # Before any ACL, b reads the room and may bring in more users.
    assert b_get(f"{V1}/state_ids/{q(s.room_id)}", {"event_id": latest})["pdu_ids"]
    assert b_get(f"{V1}/make_join/{q(s.room_id)}/{q(carol)}", {"ver": ["12"]})["event"]

    # Alice may not shut her own server out...
    refused = call(
        s.a,
        s.alice,
        "PUT",
        f"/rooms/{q(s.room_id)}/state/m.room.server_acl/",
        {"allow": ["127.0.0.2"]},
    )
    assert refused.status == 400, refused.body
    # ...but may shut out b's host (whatever its port).
    acl = {"allow": ["*"], "deny": ["127.0.0.2"], "allow_ip_literals": True}
    ok(call(s.a, s.alice, "PUT", f"/rooms/{q(s.room_id)}/state/m.room.server_acl/", acl))
    before = room_state(s)

    room = q(s.room_id)
    refused_requests: list[tuple[str, str, dict[str, Any] | None, Any]] = [
        ("GET", f"{V1}/make_join/{room}/{q(carol)}", {"ver": ["12"]}, None),
        ("PUT", f"/_matrix/federation/v2/send_join/{room}/{q('$x')}", None, {}),
        ("PUT", f"{V1}/send_join/{room}/{q('$x')}", None, {}),
        ("GET", f"{V1}/make_leave/{room}/{q(s.bob.user_id)}", None, None),
        ("PUT", f"/_matrix/federation/v2/send_leave/{room}/{q('$x')}", None, {}),
        ("PUT", f"{V1}/send_leave/{room}/{q('$x')}", None, {}),
        ("GET", f"{V1}/make_knock/{room}/{q(carol)}", {"ver": ["12"]}, None),
        ("PUT", f"{V1}/send_knock/{room}/{q('$x')}", None, {}),
        ("PUT", f"/_matrix/federation/v2/invite/{room}/{q('$x')}", None, {}),
        ("GET", f"{V1}/state/{room}", {"event_id": latest}, None),
        ("GET", f"{V1}/state_ids/{room}", {"event_id": latest}, None),
        ("GET", f"{V1}/backfill/{room}", {"v": [latest], "limit": "5"}, None),
        ("GET", f"{V1}/event_auth/{room}/{q(latest)}", None, None),
        ("POST", f"{V1}/get_missing_events/{room}", None, {"earliest_events": []}),
        ("GET", f"{V1}/timestamp_to_event/{room}", {"ts": "0", "dir": "f"}, None),
        ("GET", f"{V1}/event/{q(latest)}", None, None),
    ]
    for method, path, args, data in refused_requests:
        with pytest.raises(HttpResponseError) as error:
            if method == "GET":
                b_get(path, args)
            elif method == "PUT":
                s.b.run_sync(b_client.put_json(s.a.server_name, path, data=data))
            else:
                s.b.run_sync(b_client.post_json(s.a.server_name, path, data=data))
        assert (error.value.status, error.value.errcode) == (403, "M_FORBIDDEN"), path
    assert logged(caplog, "server ACL of", s.room_id, "denies", s.b.server_name)

    # Its PDUs are refused one by one (with the reason in the answer), its typing and
    # receipts for the room ignored.
    message = forge(s, "m.room.message", {"msgtype": "m.text", "body": "from a banned server"})
    typing_edu = {
        "edu_type": "m.typing",
        "content": {"room_id": s.room_id, "user_id": s.bob.user_id, "typing": True},
    }
    receipt = {
        "edu_type": "m.receipt",
        "content": {
            s.room_id: {"m.read": {s.bob.user_id: {"event_ids": [latest], "data": {"ts": 1}}}}
        },
    }
    answer = send_txn(s, [message], [typing_edu, receipt])
    assert answer.body["pdus"] == {event_id_of(s, message): {"error": "Server is banned from room"}}
    assert client_event(s, event_id_of(s, message)).status == 404
    assert logged(caplog, "ignoring PDU", "server ACL")
    assert logged(caplog, "ignoring typing from", s.b.server_name)
    assert logged(caplog, "ignoring receipts from", s.b.server_name)
    typing = s.a.homeserver.typing_handler
    assert s.a.run_sync(lambda: typing.get_typing_events([s.room_id], None)) == {}
    assert room_state(s) == before

    # A server the ACL allows is served as before (c shares a's host, 127.0.0.1).
    made = c.run_sync(
        lambda: c_client.get_json(
            s.a.server_name,
            f"{V1}/make_join/{room}/{q('@dan:' + c.server_name)}",
            args={"ver": ["12"]},
        )
    )
    assert made["event"]["type"] == "m.room.member"

    # Lifting the ACL lets b back in.
    ok(
        call(
            s.a,
            s.alice,
            "PUT",
            f"/rooms/{q(s.room_id)}/state/m.room.server_acl/",
            {"allow": ["*"]},
        )
    )
    assert b_get(f"{V1}/state_ids/{room}", {"event_id": latest})["pdu_ids"]
    again = forge(s, "m.room.message", {"msgtype": "m.text", "body": "back"})
    assert send_txn(s, [again]).body["pdus"] == {event_id_of(s, again): {}}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_rc_federation_bounds_each_origin(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    """b floods a with requests: past ``sleep_limit`` they wait, past ``reject_limit``
    they get 429, and c's request meanwhile is answered at once."""
    caplog.set_level(logging.INFO, logger="federation")
    limits = {
        "window_size": 10_000,
        "sleep_limit": 2,
        "sleep_delay": 1_500,
        "reject_limit": 3,
        "concurrent": 1,
    }
    a = federation.start("a", ip_range_whitelist=LOOPBACK, rc_federation=limits)
    b = federation.start("b", host="127.0.0.2", ip_range_whitelist=LOOPBACK)
    c = federation.start("c", ip_range_whitelist=LOOPBACK)
    alice = a.register_user("alice")
    path = "/_matrix/federation/v1/query/profile"
    args = {"user_id": alice.user_id}

    def timed(server: FederatedServer) -> Any:
        client = server.homeserver.federation_client

        async def one() -> tuple[float, int]:
            started = server.homeserver.reactor.seconds()
            try:
                await client.get_json(a.server_name, path, args=args)
                status = 200
            except HttpResponseError as e:
                assert e.errcode == "M_LIMIT_EXCEEDED", e.response_json
                status = e.status
            return server.homeserver.reactor.seconds() - started, status

        return one()

    # Warm up the keys both ways so that only the limiter is measured.
    for server in (b, c):
        client = server.homeserver.federation_client
        server.run_sync(client.get_json(a.server_name, path, args=args))

    async def flood() -> list[tuple[float, int]]:
        floods = [defer.ensureDeferred(timed(b)) for _ in range(8)]
        # Let b's requests arrive and start waiting before c asks.
        await task_sleep(b, 0.5)
        c_result = await timed(c)
        b_results = await defer.gatherResults(floods)
        return [c_result, *b_results]

    results = b.run_sync(flood, timeout=60)
    (c_elapsed, c_status), b_results = results[0], results[1:]
    assert c_status == 200
    assert c_elapsed < 1.0, c_elapsed
    statuses = [status for _, status in b_results]
    assert statuses.count(429) >= 1, b_results
    assert statuses.count(200) >= 2, b_results
    # Those past the sleep limit waited for it.
    slow = [elapsed for elapsed, status in b_results if status == 200 and elapsed >= 1.4]
    assert slow, b_results
    assert logged(caplog, "rc_federation: rejecting a request from", b.server_name)


async def task_sleep(server: FederatedServer, seconds: float) -> None:
    await task.deferLater(server.homeserver.reactor, seconds, lambda: None)


def test_remote_invites_at_room_creation(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    a = federation.start("a")
    b = federation.start("b")
    alice = a.register_user("alice")
    local = a.register_user("lou")
    bob = b.register_user("bob")
    # A server that is not there (nothing listens on the port).
    dead = f"@ghost:127.0.0.1:{federation_helpers.free_port()}"

    created = ok(
        call(
            a,
            alice,
            "POST",
            "/createRoom",
            {
                "preset": "private_chat",
                "is_direct": True,
                "invite": [local.user_id, bob.user_id, dead],
            },
        )
    )
    room_id = created["room_id"]

    # The local invite is part of the room's first events; the remote one went through
    # b's countersigning, the unreachable one is logged.
    state = ok(call(a, alice, "GET", f"/rooms/{q(room_id)}/state"))
    members = {e["state_key"]: e["content"] for e in state if e["type"] == "m.room.member"}
    assert members[local.user_id]["membership"] == "invite"
    assert members[bob.user_id] == {"membership": "invite", "is_direct": True}
    assert dead not in members
    assert logged(caplog, "inviting", dead, "failed")

    # Bob sees the invite on b and can join through it.
    def invited() -> Any:
        response = ok(call(b, bob, "GET", "/sync?timeout=0"))
        return room_id in response.get("rooms", {}).get("invite", {})

    wait_for(invited, "the invite in bob's /sync")
    ok(call(b, bob, "POST", f"/join/{q(room_id)}?server_name={q(a.server_name)}"))
    wait_for(lambda: bob.user_id in joined_members(a, alice, room_id), "bob's join on a")
    send_text(b, bob, room_id, "hello from b")


def test_remote_invite_refused_keeps_the_room(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that refuses the invite (here: b federates with nobody but itself)."""
    caplog.set_level(logging.INFO)
    a = federation.start("a")
    b = federation.start("b", federation_domain_whitelist=["elsewhere.test"])
    alice = a.register_user("alice")
    nobody = f"@nobody:{b.server_name}"
    created = ok(call(a, alice, "POST", "/createRoom", {"invite": [nobody], "name": "kept"}))
    room_id = created["room_id"]
    state = ok(call(a, alice, "GET", f"/rooms/{q(room_id)}/state"))
    assert ("m.room.name", "") in {(e["type"], e["state_key"]) for e in state}
    assert nobody not in {e["state_key"] for e in state if e["type"] == "m.room.member"}
    assert logged(caplog, "inviting", nobody, "failed")
    # The room works: alice can still talk in it.
    send_text(a, alice, room_id, "still mine")
