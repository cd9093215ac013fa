"""/relations over real HTTP on both databases: children, filters, pagination both ways,
/sync tokens, recursion, visibility and bad input."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import urlencode

from homeserver.errors import MatrixError
from tests.integration.harness import RunningHomeserver
from tests.integration.rooms_helpers import (
    CLIENT,
    User,
    alice,
    assert_error,
    bob,
    carol,
    quote,
    server,
)

V1 = "/_matrix/client/v1"
_redactions = itertools.count(1)

__all__ = ["alice", "bob", "carol", "server"]  # fixtures


def relations_path(room_id: str, event_id: str, *rest: str) -> str:
    path = f"{V1}/rooms/{quote(room_id)}/relations/{quote(event_id)}"
    for part in rest:
        path += "/" + quote(part)
    return path


def relations(user: User, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    query = {k: v for k, v in params.items() if v is not None}
    url = path + ("?" + urlencode(query) if query else "")
    result = user.server.request("GET", url, access_token=user.access_token)
    return result.status, result.json()


def ids(body: dict[str, Any]) -> list[str]:
    return [event["event_id"] for event in body["chunk"]]


def rel(rel_type: str, event_id: str, **extra: Any) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": rel_type, "event_id": event_id, **extra}}


def text(body: str, **content: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, **content}


def redact(user: User, room_id: str, event_id: str) -> None:
    txn = f"redact{next(_redactions)}"
    user.ok("PUT", f"/rooms/{quote(room_id)}/redact/{quote(event_id)}/{txn}", {})


def test_children_filtered_by_type_and_event_type(alice: User, bob: User) -> None:
    room_id = alice.create_room(preset="public_chat")
    assert bob.join(room_id).status == 200
    root = alice.send(room_id, text("root"))
    t1 = bob.send(room_id, text("in thread", **rel("m.thread", root)))
    reaction = bob.send(room_id, rel("m.annotation", root, key="👍"), "m.reaction")
    edit = alice.send(
        room_id, text("* edited", **{"m.new_content": text("edited")}, **rel("m.replace", root))
    )
    t2 = alice.send(room_id, text("in thread 2", **rel("m.thread", root)))
    reference = bob.send(room_id, text("see above", **rel("m.reference", root)))
    # Relationships that do not match the schema are ignored (spec).
    bob.send(room_id, {"m.relates_to": {"rel_type": "m.reference"}, "body": "no event_id"})
    # An annotation needs a key: a client sending one without is refused (as Synapse).
    keyless = bob.request(
        "PUT", f"/rooms/{quote(room_id)}/send/m.reaction/keyless", rel("m.annotation", root)
    )
    assert (keyless.status, keyless.json()["errcode"]) == (400, "M_UNKNOWN")
    bob.send(room_id, {"m.relates_to": {"rel_type": 5, "event_id": root}, "body": "bad type"})

    status, body = relations(bob, relations_path(room_id, root))
    assert status == 200, body
    # Newest first; the default page holds 5 (as Synapse).
    assert ids(body) == [reference, t2, edit, reaction, t1]
    assert "next_batch" not in body and "prev_batch" not in body
    assert "recursion_depth" not in body
    first = body["chunk"][0]
    assert first["room_id"] == room_id and first["sender"] == bob.user_id
    assert first["content"]["m.relates_to"] == {"rel_type": "m.reference", "event_id": root}

    status, body = relations(bob, relations_path(room_id, root, "m.thread"))
    assert (status, ids(body)) == (200, [t2, t1])
    status, body = relations(bob, relations_path(room_id, root, "m.annotation", "m.reaction"))
    assert (status, ids(body)) == (200, [reaction])
    status, body = relations(bob, relations_path(room_id, root, "m.thread", "m.reaction"))
    assert (status, ids(body)) == (200, [])
    status, body = relations(bob, relations_path(room_id, root, "m.replace"), dir="f")
    assert (status, ids(body)) == (200, [edit])
    # An event nothing relates to has an empty chunk.
    status, body = relations(bob, relations_path(room_id, reference))
    assert (status, body) == (200, {"chunk": []})


def test_pagination_both_ways_and_tokens(server: RunningHomeserver, alice: User) -> None:
    room_id = alice.create_room(preset="private_chat")
    root = alice.send(room_id, text("root"))
    replies = [alice.send(room_id, text(f"r{i}", **rel("m.thread", root))) for i in range(7)]
    path = relations_path(room_id, root)

    # Backwards (the default), 3 at a time.
    pages: list[list[str]] = []
    token = None
    while True:
        status, body = relations(alice, path, limit=3, **{"from": token} if token else {})
        assert status == 200, body
        if token is not None:
            assert body["prev_batch"] == token
        pages.append(ids(body))
        token = body.get("next_batch")
        if token is None:
            break
    assert pages == [replies[6:3:-1], replies[3:0:-1], replies[0:1]]

    # Forwards.
    pages = []
    token = None
    while True:
        status, body = relations(alice, path, limit=3, dir="f", **{"from": token} if token else {})
        assert status == 200, body
        pages.append(ids(body))
        token = body.get("next_batch")
        if token is None:
            break
    assert pages == [replies[0:3], replies[3:6], replies[6:7]]

    # `to` stops the walk: from page 1's end back to page 2's end is exactly page 2.
    status, first = relations(alice, path, limit=3)
    status, second = relations(alice, path, limit=3, **{"from": first["next_batch"]})
    status, body = relations(
        alice, path, limit=10, **{"from": first["next_batch"], "to": second["next_batch"]}
    )
    assert (status, ids(body)) == (200, replies[3:0:-1])
    assert "next_batch" not in body

    # A /sync next_batch is a valid `from`: only what came before it.
    sync = server.request("GET", f"{CLIENT}/sync?timeout=0", access_token=alice.access_token).json()
    later = alice.send(room_id, text("later", **rel("m.thread", root)))
    status, body = relations(alice, path, limit=20, **{"from": sync["next_batch"]})
    assert (status, ids(body)) == (200, replies[::-1])
    status, body = relations(alice, path, limit=20, dir="f", **{"from": sync["next_batch"]})
    assert (status, ids(body)) == (200, [later])
    # A /messages token too.
    messages = alice.ok("GET", f"/rooms/{quote(room_id)}/messages?dir=b&limit=1")
    status, body = relations(alice, path, limit=1, **{"from": messages["start"]})
    assert (status, ids(body)) == (200, [later])

    # limit=0: an empty page.
    status, body = relations(alice, path, limit=0)
    assert (status, body["chunk"]) == (200, [])


def test_recursion(alice: User) -> None:
    room_id = alice.create_room(preset="private_chat")
    root = alice.send(room_id, text("root"))
    chain = [root]
    for depth in range(4):
        chain.append(alice.send(room_id, text(f"ref{depth}", **rel("m.reference", chain[-1]))))
    thread = alice.send(room_id, text("thread", **rel("m.thread", root)))
    reaction = alice.send(room_id, rel("m.annotation", thread, key="x"), "m.reaction")
    path = relations_path(room_id, root)

    status, body = relations(alice, path)
    assert (status, ids(body)) == (200, [thread, chain[1]])
    status, body = relations(alice, path, recurse="true", limit=20)
    assert status == 200, body
    assert body["recursion_depth"] == 3
    # Three relationships deep, not four.
    assert ids(body) == [reaction, thread, chain[3], chain[2], chain[1]]
    status, body = relations(alice, path, recurse="true", dir="f", limit=2)
    assert ids(body) == [chain[1], chain[2]] and "next_batch" in body
    status, body = relations(
        alice, path, recurse="true", dir="f", limit=10, **{"from": body["next_batch"]}
    )
    assert ids(body) == [chain[3], thread, reaction]
    # The filters apply to every event: the reaction's only path goes through a thread.
    status, body = relations(alice, relations_path(room_id, root, "m.thread"), recurse="true")
    assert (status, ids(body)) == (200, [thread])
    status, body = relations(
        alice, relations_path(room_id, root, "m.annotation", "m.reaction"), recurse="true"
    )
    assert (status, ids(body)) == (200, [reaction])
    status, body = relations(alice, path, recurse="false")
    assert (status, ids(body)) == (200, [thread, chain[1]])
    assert "recursion_depth" not in body


def test_redactions_break_relationships(alice: User) -> None:
    room_id = alice.create_room(preset="private_chat")
    root = alice.send(room_id, text("root"))
    keep = alice.send(room_id, text("keep", **rel("m.reference", root)))
    gone = alice.send(room_id, text("gone", **rel("m.reference", root)))
    edit = alice.send(
        room_id, text("* e", **{"m.new_content": text("e")}, **rel("m.replace", root))
    )
    redact(alice, room_id, gone)
    status, body = relations(alice, relations_path(room_id, root))
    assert (status, ids(body)) == (200, [edit, keep])
    # Edits of a redacted event are not handed out: they would leak its content.
    redact(alice, room_id, root)
    status, body = relations(alice, relations_path(room_id, root))
    assert (status, ids(body)) == (200, [keep])


def test_visibility(alice: User, bob: User, carol: User) -> None:
    room_id = alice.create_room(
        preset="public_chat",
        initial_state=[
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "joined"},
            }
        ],
    )
    before = alice.send(room_id, text("before bob"))
    alice.send(room_id, text("reply before bob", **rel("m.thread", before)))
    assert bob.join(room_id).status == 200
    root = alice.send(room_id, text("after bob"))
    seen = alice.send(room_id, text("seen", **rel("m.thread", root)))

    # A parent the user may not see is a 404, as an unknown one (spec).
    assert_error(
        bob.server.request("GET", relations_path(room_id, before), access_token=bob.access_token),
        404,
        "M_NOT_FOUND",
    )
    status, body = relations(bob, relations_path(room_id, root))
    assert (status, ids(body)) == (200, [seen])

    # Bob leaves: what is sent afterwards is hidden from him, what he saw is not.
    assert bob.membership(room_id, "leave", {}).status == 200
    unseen = alice.send(room_id, text("unseen", **rel("m.thread", root)))
    status, body = relations(bob, relations_path(room_id, root))
    assert (status, ids(body)) == (200, [seen])
    status, body = relations(alice, relations_path(room_id, root))
    assert (status, ids(body)) == (200, [unseen, seen])

    # Never a member of a room that is not world-readable: 403 (as Synapse).
    assert_error(
        carol.server.request("GET", relations_path(room_id, root), access_token=carol.access_token),
        403,
        "M_FORBIDDEN",
    )


def test_bad_input(server: RunningHomeserver, alice: User, bob: User) -> None:
    room_id = alice.create_room(preset="private_chat")
    other_room = alice.create_room(preset="private_chat")
    root = alice.send(room_id, text("root"))
    elsewhere = alice.send(other_room, text("elsewhere"))

    def get(path: str, **params: Any) -> Any:
        query = "?" + urlencode(params) if params else ""
        return server.request("GET", path + query, access_token=alice.access_token)

    assert_error(get(relations_path(room_id, "$unknown")), 404, "M_NOT_FOUND")
    # An event of another room is not found in this one.
    assert_error(get(relations_path(room_id, elsewhere)), 404, "M_NOT_FOUND")
    path = relations_path(room_id, root)
    assert_error(get(path, dir="up"), 400, "M_INVALID_PARAM")
    assert_error(get(path, limit="-1"), 400, "M_INVALID_PARAM")
    assert_error(get(path, limit="many"), 400, "M_INVALID_PARAM")
    assert_error(get(path, **{"from": "garbage"}), 400, "M_INVALID_PARAM")
    assert_error(get(path, to="t1-x"), 400, "M_INVALID_PARAM")
    assert_error(get(path, recurse="maybe"), 400, "M_INVALID_PARAM")
    # Unknown rooms and rooms the user is not in look the same (as Synapse).
    assert_error(get(relations_path("!nowhere:hs.test", root)), 403, "M_FORBIDDEN")
    result = server.request("GET", path, access_token=bob.access_token)
    assert_error(result, 403, "M_FORBIDDEN")
    assert_error(server.request("GET", path), 401, "M_MISSING_TOKEN")
    # A huge limit is clamped, not refused.
    assert get(path, limit="100000").status == 200


def test_validate_new_relation(server: RunningHomeserver, alice: User) -> None:
    """The check a send makes of a new event's relationship (as Synapse)."""
    handler = server.homeserver.relations_handler
    room_id = alice.create_room(preset="private_chat")
    other_room = alice.create_room(preset="private_chat")
    root = alice.send(room_id, text("root"))
    reply = alice.send(room_id, text("reply", **rel("m.thread", root)))
    alice.send(room_id, rel("m.annotation", root, key="👍"), "m.reaction")
    elsewhere = alice.send(other_room, text("elsewhere"))

    def check(content: dict[str, Any], event_type: str = "m.room.message") -> str | None:
        try:
            server.run_sync(
                handler.validate_new_relation(room_id, event_type, alice.user_id, content)
            )
        except MatrixError as e:
            assert e.status == 400
            return e.errcode
        return None

    assert check(text("plain")) is None
    assert check(text("another reply", **rel("m.thread", root))) is None
    assert check(rel("m.annotation", root, key="👎"), "m.reaction") is None
    assert check(rel("m.annotation", root, key="👍"), "m.reaction") == "M_DUPLICATE_ANNOTATION"
    assert check(rel("m.annotation", root), "m.reaction") == "M_UNKNOWN"
    assert check(rel("m.annotation", root, key="x" * 501), "m.reaction") == "M_UNKNOWN"
    assert check(text("nested", **rel("m.thread", reply))) == "M_UNKNOWN"
    assert check(text("cross-room", **rel("m.reference", elsewhere))) == "M_UNKNOWN"
    assert check(text("unknown", **rel("m.reference", "$nowhere"))) == "M_UNKNOWN"
