"""/threads and the bundled aggregations (``unsigned.m.relations``) over real HTTP on both
databases, with replies from two users."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from tests.integration.rooms_helpers import (
    User,
    alice,
    assert_error,
    bob,
    carol,
    quote,
    server,
)
from tests.integration.test_relations import V1, ids, redact, rel, relations, relations_path, text

__all__ = ["alice", "bob", "carol", "server"]  # fixtures


def threads(user: User, room_id: str, **params: Any) -> tuple[int, dict[str, Any]]:
    query = "?" + urlencode(params) if params else ""
    result = user.server.request(
        "GET", f"{V1}/rooms/{quote(room_id)}/threads{query}", access_token=user.access_token
    )
    return result.status, result.json()


def get_event(user: User, room_id: str, event_id: str) -> dict[str, Any]:
    event: dict[str, Any] = user.ok("GET", f"/rooms/{quote(room_id)}/event/{quote(event_id)}")
    return event


def aggregations(event: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = event["unsigned"].get("m.relations", {})
    return found


def edit(user: User, room_id: str, target: str, body: str) -> str:
    return user.send(
        room_id, text(f"* {body}", **{"m.new_content": text(body)}, **rel("m.replace", target))
    )


def test_thread_aggregation_from_two_users(alice: User, bob: User, carol: User) -> None:
    room_id = alice.create_room(preset="public_chat")
    for user in (bob, carol):
        assert user.join(room_id).status == 200
    root = alice.send(room_id, text("root"))
    bob.send(room_id, text("bob 1", **rel("m.thread", root)))
    alice.send(room_id, text("alice 1", **rel("m.thread", root)))
    latest = bob.send(room_id, text("bob 2", **rel("m.thread", root)))
    # Reactions are not aggregated by the server (spec), and do not count as replies.
    carol.send(room_id, rel("m.annotation", root, key="👍"), "m.reaction")

    for user, participated in ((alice, True), (bob, True), (carol, False)):
        bundle = aggregations(get_event(user, room_id, root))
        assert set(bundle) == {"m.thread"}, bundle
        thread = bundle["m.thread"]
        assert thread["count"] == 3
        assert thread["current_user_participated"] is participated
        assert thread["latest_event"]["event_id"] == latest
        assert thread["latest_event"]["content"]["body"] == "bob 2"
        assert thread["latest_event"]["room_id"] == room_id

    # The latest reply carries its own aggregations: an edit of it.
    edited = edit(bob, room_id, latest, "bob 2 (edited)")
    thread = aggregations(get_event(carol, room_id, root))["m.thread"]
    assert thread["latest_event"]["unsigned"]["m.relations"]["m.replace"]["event_id"] == edited
    # An edit is not a reply.
    assert thread["count"] == 3

    # Redacting the latest reply moves the summary back to the one before.
    redact(bob, room_id, latest)
    thread = aggregations(get_event(carol, room_id, root))["m.thread"]
    assert thread["count"] == 2
    assert thread["latest_event"]["content"]["body"] == "alice 1"


def test_edits_and_references(alice: User, bob: User) -> None:
    room_id = alice.create_room(preset="public_chat")
    assert bob.join(room_id).status == 200
    original = alice.send(room_id, text("I like cake"))
    first = edit(alice, room_id, original, "I like chocolate cake")
    second = edit(alice, room_id, original, "I really like chocolate cake")
    # Invalid edits are ignored: another sender, another type, no m.new_content.
    edit(bob, room_id, original, "bob was here")
    alice.send(
        room_id,
        {"body": "x", **{"m.new_content": {"body": "x"}}, **rel("m.replace", original)},
        "org.example.other",
    )
    alice.send(room_id, text("* no new content", **rel("m.replace", original)))
    ref1 = bob.send(room_id, text("ref 1", **rel("m.reference", original)))
    ref2 = alice.send(room_id, text("ref 2", **rel("m.reference", original)))

    event = get_event(bob, room_id, original)
    # The spec (v1.7): the content is left intact; the latest edit is bundled in full.
    assert event["content"]["body"] == "I like cake"
    bundle = aggregations(event)
    assert set(bundle) == {"m.replace", "m.reference"}
    replace = bundle["m.replace"]
    assert replace["event_id"] == second and replace["sender"] == alice.user_id
    assert replace["type"] == "m.room.message" and "origin_server_ts" in replace
    assert replace["content"]["m.new_content"]["body"] == "I really like chocolate cake"
    assert bundle["m.reference"] == {"chunk": [{"event_id": ref1}, {"event_id": ref2}]}
    # Edits and annotations get no aggregations of their own; references may.
    assert "m.relations" not in get_event(bob, room_id, second)["unsigned"]

    # Redacting the latest edit reverts to the one before.
    redact(alice, room_id, second)
    assert aggregations(get_event(bob, room_id, original))["m.replace"]["event_id"] == first
    # A redacted original bundles no edit (its references stay).
    redact(alice, room_id, original)
    bundle = aggregations(get_event(bob, room_id, original))
    assert set(bundle) == {"m.reference"}


def test_aggregations_on_messages_context_relations_and_sync(alice: User, bob: User) -> None:
    room_id = alice.create_room(preset="public_chat")
    assert bob.join(room_id).status == 200
    root = alice.send(room_id, text("root"))
    reply = bob.send(room_id, text("reply", **rel("m.thread", root)))
    edited = edit(bob, room_id, reply, "reply, edited")
    ref = alice.send(room_id, text("ref", **rel("m.reference", reply)))

    def by_id(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {event["event_id"]: event for event in events}

    page = by_id(bob.ok("GET", f"/rooms/{quote(room_id)}/messages?dir=b&limit=20")["chunk"])
    assert aggregations(page[root])["m.thread"]["latest_event"]["event_id"] == reply
    assert aggregations(page[reply]) == {
        "m.replace": aggregations(page[reply])["m.replace"],
        "m.reference": {"chunk": [{"event_id": ref}]},
    }
    assert aggregations(page[reply])["m.replace"]["event_id"] == edited
    # The thread's latest reply carries the same bundle as the reply itself.
    latest = aggregations(page[root])["m.thread"]["latest_event"]
    assert latest["unsigned"]["m.relations"]["m.reference"] == {"chunk": [{"event_id": ref}]}

    context = bob.ok("GET", f"/rooms/{quote(room_id)}/context/{quote(root)}?limit=10")
    assert aggregations(context["event"])["m.thread"]["count"] == 1
    after = by_id(context["events_after"])
    assert aggregations(after[reply])["m.replace"]["event_id"] == edited

    status, body = relations(bob, relations_path(room_id, root))
    assert status == 200
    assert aggregations(by_id(body["chunk"])[reply])["m.replace"]["event_id"] == edited

    sync_filter = '{"room":{"timeline":{"limit":50}}}'
    sync = bob.ok("GET", f"/sync?timeout=0&filter={quote(sync_filter)}")
    timeline = by_id(sync["rooms"]["join"][room_id]["timeline"]["events"])
    thread = aggregations(timeline[root])["m.thread"]
    assert thread["count"] == 1
    # Nested events take the form of the timeline's: no room_id in /sync.
    assert thread["latest_event"]["event_id"] == reply and "room_id" not in thread["latest_event"]


def test_threads_ordered_by_latest_reply_and_paginated(alice: User, bob: User, carol: User) -> None:
    room_id = alice.create_room(preset="public_chat")
    for user in (bob, carol):
        assert user.join(room_id).status == 200
    root_a = alice.send(room_id, text("A"))
    root_b = alice.send(room_id, text("B"))
    root_c = bob.send(room_id, text("C"))
    alice.send(room_id, text("not a thread"))
    alice.send(room_id, text("a1", **rel("m.thread", root_a)))
    carol.send(room_id, text("b1", **rel("m.thread", root_b)))
    alice.send(room_id, text("c1", **rel("m.thread", root_c)))
    alice.send(room_id, text("a2", **rel("m.thread", root_a)))

    status, body = threads(alice, room_id)
    assert status == 200, body
    assert ids(body) == [root_a, root_c, root_b]
    assert "next_batch" not in body
    assert aggregations(body["chunk"][0])["m.thread"]["count"] == 2
    assert aggregations(body["chunk"][0])["m.thread"]["latest_event"]["content"]["body"] == "a2"

    pages = []
    token = None
    while True:
        params: dict[str, Any] = {"limit": 1}
        if token is not None:
            params["from"] = token
        status, body = threads(alice, room_id, **params)
        assert status == 200, body
        pages.append(ids(body))
        token = body.get("next_batch")
        if token is None:
            break
    assert pages == [[root_a], [root_c], [root_b]]

    # Participation: started the thread, or replied to it.
    status, body = threads(carol, room_id, include="participated")
    assert (status, ids(body)) == (200, [root_b])
    status, body = threads(bob, room_id, include="participated")
    assert (status, ids(body)) == (200, [root_c])
    status, body = threads(alice, room_id, include="participated", limit=1)
    assert ids(body) == [root_a] and "next_batch" in body
    status, body = threads(alice, room_id, include="participated", **{"from": body["next_batch"]})
    assert ids(body) == [root_c, root_b]

    # A reply moves its thread to the front.
    carol.send(room_id, text("b2", **rel("m.thread", root_b)))
    status, body = threads(bob, room_id)
    assert ids(body) == [root_b, root_a, root_c]


def test_threads_visibility_and_bad_input(alice: User, bob: User, carol: User) -> None:
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
    early = alice.send(room_id, text("early"))
    alice.send(room_id, text("early reply", **rel("m.thread", early)))
    assert bob.join(room_id).status == 200
    late = alice.send(room_id, text("late"))
    alice.send(room_id, text("late reply", **rel("m.thread", late)))

    status, body = threads(alice, room_id)
    assert (status, ids(body)) == (200, [late, early])
    # Bob cannot see the thread root sent before he joined.
    status, body = threads(bob, room_id)
    assert (status, ids(body)) == (200, [late])

    assert_error(
        carol.server.request(
            "GET", f"{V1}/rooms/{quote(room_id)}/threads", access_token=carol.access_token
        ),
        403,
        "M_FORBIDDEN",
    )
    for params in ({"include": "some"}, {"limit": "0"}, {"limit": "x"}, {"from": "bogus"}):
        result = alice.server.request(
            "GET",
            f"{V1}/rooms/{quote(room_id)}/threads?{urlencode(params)}",
            access_token=alice.access_token,
        )
        assert_error(result, 400, "M_INVALID_PARAM")
    assert_error(
        alice.server.request(
            "GET",
            f"{V1}/rooms/{quote('!unknown:hs.test')}/threads",
            access_token=alice.access_token,
        ),
        403,
        "M_FORBIDDEN",
    )


def test_ignored_users_count_for_nothing(alice: User, bob: User, carol: User) -> None:
    room_id = alice.create_room(preset="public_chat")
    for user in (bob, carol):
        assert user.join(room_id).status == 200
    root = alice.send(room_id, text("root"))
    bob.send(room_id, text("bob 1", **rel("m.thread", root)))
    alice_reply = alice.send(room_id, text("alice 1", **rel("m.thread", root)))
    bob.send(room_id, text("bob 2", **rel("m.thread", root)))
    bob.send(room_id, text("bob ref", **rel("m.reference", root)))
    alice_ref = alice.send(room_id, text("alice ref", **rel("m.reference", root)))
    bob_root = bob.send(room_id, text("bob's thread"))
    alice.send(room_id, text("reply to bob", **rel("m.thread", bob_root)))

    ignore: dict[str, Any] = {"ignored_users": {bob.user_id: {}}}
    carol.ok("PUT", f"/user/{quote(carol.user_id)}/account_data/m.ignored_user_list", ignore)

    bundle = aggregations(get_event(carol, room_id, root))
    assert bundle["m.thread"]["count"] == 1
    assert bundle["m.thread"]["latest_event"]["event_id"] == alice_reply
    assert bundle["m.reference"] == {"chunk": [{"event_id": alice_ref}]}
    # Alice ignores nobody.
    assert aggregations(get_event(alice, room_id, root))["m.thread"]["count"] == 3

    # The spec: an ignored user's thread root comes back redacted.
    status, body = threads(carol, room_id)
    assert status == 200 and ids(body) == [bob_root, root]
    assert body["chunk"][0]["content"] == {}
    status, body = threads(alice, room_id)
    assert body["chunk"][0]["content"]["body"] == "bob's thread"
