"""PUT /sendToDevice and the to_device section of /sync, over real HTTP on both engines:
delivery, acknowledgement, idempotency, restarts and device deletion."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.e2e_helpers import V3, serve, sync
from tests.integration.harness import (
    RegisteredUser,
    RunningHomeserver,
    make_config,
    start_homeserver,
)


@pytest.fixture
def hs(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    yield from serve(tmp_path, db_config, reactor_thread, run_sync)


def send(
    hs: RunningHomeserver,
    sender: RegisteredUser,
    txn_id: str,
    messages: Any,
    event_type: str = "m.test",
) -> Any:
    return hs.request(
        "PUT",
        f"{V3}/sendToDevice/{event_type}/{txn_id}",
        access_token=sender.access_token,
        body={"messages": messages},
    )


def events(response: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = response["to_device"]["events"]
    return result


def test_delivered_until_acknowledged_and_idempotent(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    phone = hs.login(bob.user_id, device_id="PHONE")
    first = sync(hs, bob.access_token)
    assert events(first) == []

    message = {bob.user_id: {bob.device_id: {"n": 1}}}
    assert send(hs, alice, "t1", message).status == 200
    # The same transaction again is not a second message.
    assert send(hs, alice, "t1", message).status == 200
    assert send(hs, alice, "t2", {bob.user_id: {"*": {"n": 2}}}).status == 200

    got = sync(hs, bob.access_token, first["next_batch"])
    expected = [
        {"type": "m.test", "sender": alice.user_id, "content": {"n": 1}},
        {"type": "m.test", "sender": alice.user_id, "content": {"n": 2}},
    ]
    assert events(got) == expected
    # A client that lost that response syncs from the old token: nothing is lost.
    assert events(sync(hs, bob.access_token, first["next_batch"])) == expected
    # Syncing from the new token acknowledges them; they are gone, even from an old token.
    acked = sync(hs, bob.access_token, got["next_batch"])
    assert events(acked) == []
    assert events(sync(hs, bob.access_token, first["next_batch"])) == []
    # The other device got only the "*" message.
    assert events(sync(hs, phone["access_token"])) == [expected[1]]


def test_long_poll_wakes_on_a_message(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    since = sync(hs, bob.access_token)["next_batch"]
    timer = threading.Timer(
        0.3, lambda: send(hs, alice, "wake", {bob.user_id: {bob.device_id: {"hi": True}}})
    )
    timer.start()
    try:
        woke = sync(hs, bob.access_token, since, timeout=10_000)
    finally:
        timer.join()
    assert [e["content"] for e in events(woke)] == [{"hi": True}]


def test_bad_input_and_unknown_recipients(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    bad_messages: list[Any] = [[], {bob.user_id: []}, {bob.user_id: {"DEV": "text"}}]
    for messages in bad_messages:
        result = send(hs, alice, "bad", messages)
        assert (result.status, result.json()["errcode"]) == (400, "M_BAD_JSON"), messages
    missing = hs.request(
        "PUT", f"{V3}/sendToDevice/m.test/x", access_token=alice.access_token, body={}
    )
    assert (missing.status, missing.json()["errcode"]) == (400, "M_BAD_JSON")
    result = send(hs, alice, "bad-user", {"not-a-user": {"*": {}}})
    assert (result.status, result.json()["errcode"]) == (400, "M_INVALID_PARAM")
    # Unknown users and devices, and other servers' users: accepted, nothing delivered.
    ok = send(
        hs,
        alice,
        "unknown",
        {
            "@nobody:hs.test": {"*": {"a": 1}},
            bob.user_id: {"NODEVICE": {"a": 2}},
            "@carol:elsewhere.test": {"*": {"a": 3}},
        },
    )
    assert ok.status == 200, ok.body
    assert events(sync(hs, bob.access_token)) == []
    # A failed request used no transaction ID: the same ID works afterwards.
    assert send(hs, alice, "bad-user", {bob.user_id: {"*": {"a": 4}}}).status == 200
    assert [e["content"] for e in events(sync(hs, bob.access_token))] == [{"a": 4}]


def test_deleted_device_loses_its_messages(hs: RunningHomeserver) -> None:
    alice = hs.register_user("alice")
    bob = hs.register_user("bob")
    phone = hs.login(bob.user_id, device_id="PHONE")
    assert send(hs, alice, "t", {bob.user_id: {"*": {"x": 1}}}).status == 200
    logout = hs.request("POST", f"{V3}/logout", access_token=phone["access_token"], body={})
    assert logout.status == 200
    # The same device ID logging in again is a new device: nothing waits for it.
    again = hs.login(bob.user_id, device_id="PHONE")
    assert events(sync(hs, again["access_token"])) == []
    assert [e["content"] for e in events(sync(hs, bob.access_token))] == [{"x": 1}]


def test_messages_and_positions_survive_a_restart(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    config = make_config(tmp_path, db_config)
    hs = start_homeserver(config, reactor_thread, run_sync)
    try:
        alice = hs.register_user("alice")
        bob = hs.register_user("bob")
        first = sync(hs, bob.access_token)
        for i in range(3):
            assert send(hs, alice, f"t{i}", {bob.user_id: {"*": {"i": i}}}).status == 200
        got = sync(hs, bob.access_token, first["next_batch"])
        assert len(events(got)) == 3
        # Acknowledge them all: the inbox is empty before the restart.
        token = sync(hs, bob.access_token, got["next_batch"])["next_batch"]
        assert send(hs, alice, "pending", {bob.user_id: {"*": {"pending": True}}}).status == 200
    finally:
        hs.stop()
    hs = start_homeserver(config, reactor_thread, run_sync)
    try:
        # The message sent before the restart is still there, and one sent after it is
        # not mistaken for acknowledged by the token from before.
        assert send(hs, alice, "after", {bob.user_id: {"*": {"after": True}}}).status == 200
        # The transaction IDs are remembered too.
        assert send(hs, alice, "t0", {bob.user_id: {"*": {"i": 0}}}).status == 200
        contents = [e["content"] for e in events(sync(hs, bob.access_token, token))]
        assert contents == [{"pending": True}, {"after": True}]
    finally:
        hs.stop()
