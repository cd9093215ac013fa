"""Joining and leaving across two Hearth servers over real TLS on loopback, on SQLite and
PostgreSQL (each server its own database): joins by room ID and by alias, messages both
ways through the sender and /send, invites accepted and rejected, leave and rejoin, kick
and ban across servers, knocks, and the resident side's answers to bad requests."""

from __future__ import annotations

from typing import Any

from federation.client import HttpResponseError, federation_path
from homeserver.events.formats import serialize_for_federation
from homeserver.events.hashing import make_event
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from tests.integration import federation_helpers
from tests.integration.federation_harness import (
    call,
    create_room,
    ok,
    q,
    register,
    send_text,
    wait_for,
)
from tests.integration.federation_helpers import FederatedServer, Federation
from tests.integration.harness import RegisteredUser

db_configs = federation_helpers.db_configs
federation = federation_helpers.federation


def sync(server: FederatedServer, user: RegisteredUser) -> Any:
    return ok(call(server, user, "GET", "/sync?timeout=0"))


def membership_of(server: FederatedServer, user: RegisteredUser, room_id: str) -> str | None:
    """The user's membership section for the room in an initial /sync."""
    rooms = sync(server, user)["rooms"]
    for section in ("join", "invite", "knock", "leave"):
        if room_id in rooms.get(section, {}):
            return section
    return None


def timeline_bodies(server: FederatedServer, user: RegisteredUser, room_id: str) -> list[str]:
    result = ok(call(server, user, "GET", f"/rooms/{q(room_id)}/messages?dir=b&limit=50"))
    return [
        e["content"]["body"]
        for e in result["chunk"]
        if e["type"] == "m.room.message" and "body" in e.get("content", {})
    ]


def member_state(
    server: FederatedServer, user: RegisteredUser, room_id: str, target: str
) -> str | None:
    result = call(server, user, "GET", f"/rooms/{q(room_id)}/state/m.room.member/{q(target)}")
    if result.status != 200:
        return None
    membership: str = result.json()["membership"]
    return membership


def two_servers(federation: Federation) -> tuple[FederatedServer, FederatedServer]:
    return federation.start("a"), federation.start("b")


def joined_both_ways(
    a: FederatedServer,
    alice: RegisteredUser,
    b: FederatedServer,
    bob: RegisteredUser,
    room_id: str,
) -> None:
    """Each server sees the other's user joined."""
    wait_for(lambda: member_state(a, alice, room_id, bob.user_id) == "join", "bob joined on A")
    assert member_state(b, bob, room_id, alice.user_id) == "join"


def test_join_by_room_id_and_talk_both_ways(federation: Federation) -> None:
    a, b = two_servers(federation)
    alice, bob = register(a, "alice"), register(b, "bob")
    room_id = create_room(a, alice, preset="public_chat", name="Over the wire")
    send_text(a, alice, room_id, "before bob")

    result = call(b, bob, "POST", f"/join/{q(room_id)}?server_name={q(a.server_name)}")
    assert ok(result) == {"room_id": room_id}
    joined_both_ways(a, alice, b, bob, room_id)

    # Bob's server has the room's state: its name, and alice as a member.
    name = ok(call(b, bob, "GET", f"/rooms/{q(room_id)}/state/m.room.name"))
    assert name == {"name": "Over the wire"}
    assert room_id in ok(call(b, bob, "GET", "/joined_rooms"))["joined_rooms"]
    assert room_id in sync(b, bob)["rooms"]["join"]

    # B -> A through B's sender and A's /send, and A -> B.
    send_text(b, bob, room_id, "hello from b")
    wait_for(lambda: "hello from b" in timeline_bodies(a, alice, room_id), "b's message on A")
    send_text(a, alice, room_id, "hello from a")
    wait_for(lambda: "hello from a" in timeline_bodies(b, bob, room_id), "a's message on B")

    def synced(server: FederatedServer, user: RegisteredUser, text: str) -> bool:
        room = sync(server, user)["rooms"]["join"].get(room_id, {})
        return any(
            e.get("content", {}).get("body") == text
            for e in room.get("timeline", {}).get("events", [])
        )

    assert synced(a, alice, "hello from b")
    assert synced(b, bob, "hello from a")
    assert synced(b, bob, "hello from b")

    # Joining again is a no-op that goes through the room's own server path.
    assert ok(call(b, bob, "POST", f"/rooms/{q(room_id)}/join")) == {"room_id": room_id}


def test_join_by_remote_alias(federation: Federation) -> None:
    a, b = two_servers(federation)
    alice, bob = register(a, "alice"), register(b, "bob")
    room_id = create_room(a, alice, preset="public_chat", room_alias_name="lobby")
    alias = f"#lobby:{a.server_name}"

    looked_up = ok(call(b, bob, "GET", f"/directory/room/{q(alias)}"))
    assert looked_up["room_id"] == room_id
    assert a.server_name in looked_up["servers"]

    assert ok(call(b, bob, "POST", f"/join/{q(alias)}")) == {"room_id": room_id}
    joined_both_ways(a, alice, b, bob, room_id)

    unknown = call(b, bob, "POST", f"/join/{q('#nowhere:' + a.server_name)}")
    assert unknown.status == 404, unknown.body
    assert unknown.json()["errcode"] == "M_NOT_FOUND"


def test_join_refused_and_unknown(federation: Federation) -> None:
    a, b = two_servers(federation)
    alice, bob = register(a, "alice"), register(b, "bob")
    private = create_room(a, alice, preset="private_chat")

    refused = call(b, bob, "POST", f"/join/{q(private)}?server_name={q(a.server_name)}")
    assert refused.status == 403, refused.body
    assert refused.json()["errcode"] == "M_FORBIDDEN"
    assert membership_of(b, bob, private) is None

    unknown = call(b, bob, "POST", f"/join/{q('!nope:' + a.server_name)}")
    assert unknown.status == 404, unknown.body


def test_invite_accepted(federation: Federation) -> None:
    a, b = two_servers(federation)
    alice, bob = register(a, "alice"), register(b, "bob")
    room_id = create_room(a, alice, preset="private_chat", name="Secret")

    ok(call(a, alice, "POST", f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}))
    assert member_state(a, alice, room_id, bob.user_id) == "invite"

    # The invite is in bob's /sync with the room's stripped state.
    invite = wait_for(
        lambda: sync(b, bob)["rooms"].get("invite", {}).get(room_id), "the invite on B"
    )
    events = invite["invite_state"]["events"]
    assert {"type": "m.room.name", "state_key": "", "content": {"name": "Secret"}} in [
        {k: e[k] for k in ("type", "state_key", "content")} for e in events
    ]
    own = [e for e in events if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert own and own[0]["content"]["membership"] == "invite"
    assert own[0]["sender"] == alice.user_id

    # Accepting: a join through the inviting server (no server name given).
    assert ok(call(b, bob, "POST", f"/rooms/{q(room_id)}/join")) == {"room_id": room_id}
    joined_both_ways(a, alice, b, bob, room_id)
    assert membership_of(b, bob, room_id) == "join"
    send_text(b, bob, room_id, "thanks for the invite")
    wait_for(lambda: "thanks for the invite" in timeline_bodies(a, alice, room_id), "bob's message")


def test_invite_rejected(federation: Federation) -> None:
    a, b = two_servers(federation)
    alice, bob = register(a, "alice"), register(b, "bob")
    room_id = create_room(a, alice, preset="private_chat")
    ok(call(a, alice, "POST", f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}))
    wait_for(lambda: membership_of(b, bob, room_id) == "invite", "the invite on B")

    ok(call(b, bob, "POST", f"/rooms/{q(room_id)}/leave", {"reason": "no thanks"}))
    # Rejected on the inviting server too (make_leave/send_leave), and gone from bob's sync.
    wait_for(lambda: member_state(a, alice, room_id, bob.user_id) == "leave", "the rejection")
    assert membership_of(b, bob, room_id) is None
    filtered = '{"room":{"include_leave":true}}'
    rooms = ok(call(b, bob, "GET", f"/sync?timeout=0&filter={q(filtered)}"))["rooms"]
    assert room_id in rooms.get("leave", {})

    # Invited again: the new invite shows, and can be accepted.
    ok(call(a, alice, "POST", f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}))
    wait_for(lambda: membership_of(b, bob, room_id) == "invite", "the second invite on B")
    ok(call(b, bob, "POST", f"/rooms/{q(room_id)}/join"))
    joined_both_ways(a, alice, b, bob, room_id)


def test_leave_and_rejoin(federation: Federation) -> None:
    a, b = two_servers(federation)
    alice, bob = register(a, "alice"), register(b, "bob")
    room_id = create_room(a, alice, preset="public_chat")
    via = f"?server_name={q(a.server_name)}"
    ok(call(b, bob, "POST", f"/join/{q(room_id)}{via}"))
    joined_both_ways(a, alice, b, bob, room_id)

    ok(call(b, bob, "POST", f"/rooms/{q(room_id)}/leave"))
    wait_for(lambda: member_state(a, alice, room_id, bob.user_id) == "leave", "bob's leave on A")
    # While bob is away, the room goes on without his server.
    send_text(a, alice, room_id, "while bob was away")

    ok(call(b, bob, "POST", f"/join/{q(room_id)}{via}"))
    joined_both_ways(a, alice, b, bob, room_id)
    send_text(b, bob, room_id, "back again")
    wait_for(lambda: "back again" in timeline_bodies(a, alice, room_id), "bob's message on A")
    send_text(a, alice, room_id, "welcome back")
    wait_for(lambda: "welcome back" in timeline_bodies(b, bob, room_id), "alice's message on B")


def test_kick_and_ban_across_servers(federation: Federation) -> None:
    a, b = two_servers(federation)
    alice, bob = register(a, "alice"), register(b, "bob")
    room_id = create_room(a, alice, preset="public_chat")
    via = f"?server_name={q(a.server_name)}"
    ok(call(b, bob, "POST", f"/join/{q(room_id)}{via}"))
    joined_both_ways(a, alice, b, bob, room_id)

    ok(call(a, alice, "POST", f"/rooms/{q(room_id)}/kick", {"user_id": bob.user_id}))
    # Bob's server hears of the kick though its user is no longer in the room.
    wait_for(lambda: membership_of(b, bob, room_id) != "join", "the kick on B")
    filtered = '{"room":{"include_leave":true}}'
    rooms = ok(call(b, bob, "GET", f"/sync?timeout=0&filter={q(filtered)}"))["rooms"]
    assert room_id in rooms["leave"]

    # Kicked users may come back; banned ones may not.
    ok(call(b, bob, "POST", f"/join/{q(room_id)}{via}"))
    joined_both_ways(a, alice, b, bob, room_id)
    ok(call(a, alice, "POST", f"/rooms/{q(room_id)}/ban", {"user_id": bob.user_id}))
    wait_for(lambda: membership_of(b, bob, room_id) != "join", "the ban on B")
    assert member_state(a, alice, room_id, bob.user_id) == "ban"
    again = call(b, bob, "POST", f"/join/{q(room_id)}{via}")
    assert again.status == 403, again.body

    # And a remote user bans a local one: carol on B is made a moderator first.
    carol = register(a, "carol")
    ok(call(a, carol, "POST", f"/join/{q(room_id)}"))
    ok(call(a, alice, "POST", f"/rooms/{q(room_id)}/unban", {"user_id": bob.user_id}))
    ok(call(b, bob, "POST", f"/join/{q(room_id)}{via}"))
    joined_both_ways(a, alice, b, bob, room_id)
    levels = ok(call(a, alice, "GET", f"/rooms/{q(room_id)}/state/m.room.power_levels"))
    levels["users"][bob.user_id] = 50
    ok(call(a, alice, "PUT", f"/rooms/{q(room_id)}/state/m.room.power_levels", levels))
    wait_for(
        lambda: (
            ok(call(b, bob, "GET", f"/rooms/{q(room_id)}/state/m.room.power_levels"))["users"].get(
                bob.user_id
            )
            == 50
        ),
        "the power levels on B",
    )
    ok(call(b, bob, "POST", f"/rooms/{q(room_id)}/kick", {"user_id": carol.user_id}))
    wait_for(lambda: member_state(a, alice, room_id, carol.user_id) == "leave", "carol kicked")


def test_knock_on_a_remote_room(federation: Federation) -> None:
    a, b = two_servers(federation)
    alice, bob = register(a, "alice"), register(b, "bob")
    room_id = create_room(
        a,
        alice,
        room_version="10",
        preset="private_chat",
        name="Knock knock",
        initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}],
    )
    via = f"?server_name={q(a.server_name)}"
    result = call(b, bob, "POST", f"/knock/{q(room_id)}{via}", {"reason": "let me in"})
    assert ok(result) == {"room_id": room_id}

    knock = sync(b, bob)["rooms"]["knock"][room_id]["knock_state"]["events"]
    assert {"m.room.create", "m.room.join_rules", "m.room.name"} <= {e["type"] for e in knock}
    own = [e for e in knock if e["type"] == "m.room.member"]
    assert own[0]["content"]["membership"] == "knock"
    assert member_state(a, alice, room_id, bob.user_id) == "knock"

    # Alice lets bob in: the invite reaches B, bob joins.
    ok(call(a, alice, "POST", f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}))
    wait_for(lambda: membership_of(b, bob, room_id) == "invite", "the invite after the knock")
    ok(call(b, bob, "POST", f"/rooms/{q(room_id)}/join"))
    joined_both_ways(a, alice, b, bob, room_id)


def test_knock_refused_in_a_room_without_knocking(federation: Federation) -> None:
    a, b = two_servers(federation)
    alice, bob = register(a, "alice"), register(b, "bob")
    room_id = create_room(a, alice, room_version="10", preset="private_chat")
    result = call(b, bob, "POST", f"/knock/{q(room_id)}?server_name={q(a.server_name)}")
    assert result.status == 403, result.body
    assert membership_of(b, bob, room_id) is None


def test_resident_side_refuses_bad_requests(federation: Federation) -> None:
    a, b = two_servers(federation)
    alice = register(a, "alice")
    room_id = create_room(a, alice, preset="public_chat", room_version="10")
    client = b.homeserver.federation_client

    def fails(call_: Any) -> HttpResponseError:
        try:
            b.run_sync(call_)
        except HttpResponseError as e:
            return e
        raise AssertionError("the request succeeded")

    make_join = "/_matrix/federation/v1/make_join/%s/%s"
    # The joining user must be on the asking server.
    error = fails(
        client.get_json(
            a.server_name, federation_path(make_join, room_id, alice.user_id), args={"ver": "10"}
        )
    )
    assert (error.status, error.errcode) == (403, "M_FORBIDDEN")
    # A room version the asking server does not support.
    error = fails(
        client.get_json(
            a.server_name,
            federation_path(make_join, room_id, f"@x:{b.server_name}"),
            args={"ver": ["1", "2"]},
        )
    )
    assert (error.status, error.errcode) == (400, "M_INCOMPATIBLE_ROOM_VERSION")
    assert error.response_json["room_version"] == "10"
    # An unknown room.
    error = fails(
        client.get_json(
            a.server_name,
            federation_path(make_join, f"!nope:{a.server_name}", f"@x:{b.server_name}"),
            args={"ver": "10"},
        )
    )
    assert (error.status, error.errcode) == (404, "M_NOT_FOUND")

    # A good template, but a send_join that is not a join of the asking server's user.
    template = b.run_sync(
        client.get_json(
            a.server_name,
            federation_path(make_join, room_id, f"@x:{b.server_name}"),
            args={"ver": "10"},
        )
    )
    assert template["room_version"] == "10"
    event = template["event"]
    assert (event["type"], event["state_key"], event["content"]) == (
        "m.room.member",
        f"@x:{b.server_name}",
        {"membership": "join"},
    )
    error = fails(
        client.put_json(
            a.server_name,
            federation_path("/_matrix/federation/v2/send_join/%s/%s", room_id, "$nope"),
            data={**event, "content": {"membership": "leave"}},
        )
    )
    assert (error.status, error.errcode) == (400, "M_INVALID_PARAM")

    # An invite of a user who is not on the receiving server.
    error = fails(
        client.put_json(
            a.server_name,
            federation_path("/_matrix/federation/v2/invite/%s/%s", room_id, "$nope"),
            data={"room_version": "10", "event": {**event, "content": {"membership": "invite"}}},
        )
    )
    assert error.status == 400


def test_a_third_server_hears_of_a_join_through_the_resident(federation: Federation) -> None:
    a, b = two_servers(federation)
    c = federation.start("c")
    alice, bob, carol = register(a, "alice"), register(b, "bob"), register(c, "carol")
    room_id = create_room(a, alice, preset="public_chat")
    via = f"?server_name={q(a.server_name)}"
    ok(call(c, carol, "POST", f"/join/{q(room_id)}{via}"))
    wait_for(lambda: member_state(a, alice, room_id, carol.user_id) == "join", "carol on A")

    ok(call(b, bob, "POST", f"/join/{q(room_id)}{via}"))
    # C hears of the join: A passes on what it took in by send_join, B sends it too.
    wait_for(lambda: member_state(c, carol, room_id, bob.user_id) == "join", "bob's join on C")
    send_text(b, bob, room_id, "hi carol")
    wait_for(lambda: "hi carol" in timeline_bodies(c, carol, room_id), "bob's message on C")


def test_restricted_join_authorised_by_the_resident(federation: Federation) -> None:
    a, b = two_servers(federation)
    alice = register(a, "alice")
    bob, carol = register(b, "bob"), register(b, "carol")
    # A space-like room bob is in, and a restricted room that admits its members.
    club = create_room(a, alice, preset="public_chat", room_version="10")
    restricted = create_room(
        a,
        alice,
        preset="private_chat",
        room_version="10",
        initial_state=[
            {
                "type": "m.room.join_rules",
                "state_key": "",
                "content": {
                    "join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": club}],
                },
            }
        ],
    )
    ok(call(b, bob, "POST", f"/join/{q(club)}?server_name={q(a.server_name)}"))
    wait_for(lambda: member_state(a, alice, club, bob.user_id) == "join", "bob in the club")

    # Bob may join: the resident names a local user who may invite and co-signs the join.
    joined = call(b, bob, "POST", f"/join/{q(restricted)}?server_name={q(a.server_name)}")
    assert ok(joined) == {"room_id": restricted}
    member_path = f"/rooms/{q(restricted)}/state/m.room.member/{q(bob.user_id)}"
    member = wait_for(
        lambda: r if (r := call(a, alice, "GET", member_path)).status == 200 else None,
        "bob's member event on A",
    )
    content = ok(member)
    assert content["membership"] == "join"
    assert content["join_authorised_via_users_server"] == alice.user_id

    # Carol is in no allowed room: refused.
    refused = call(b, carol, "POST", f"/join/{q(restricted)}?server_name={q(a.server_name)}")
    assert refused.status == 403, refused.body
    assert membership_of(b, carol, restricted) is None


def test_send_join_with_omit_members(federation: Federation) -> None:
    """``omit_members=true``: member events left out of ``state`` (but the heroes' of a
    room without a name), ``servers_in_room`` given, and ``auth_chain`` still covering
    every returned event without repeating what ``state`` holds."""
    a, b = two_servers(federation)
    alice = register(a, "alice")
    others = [register(a, name) for name in ("carol", "dave", "erin", "frank", "gina")]
    named = create_room(a, alice, preset="public_chat", name="Named", room_version="10")
    unnamed = create_room(a, alice, preset="public_chat", room_version="10")
    for room_id in (named, unnamed):
        for user in others:
            ok(call(a, user, "POST", f"/join/{q(room_id)}"))
    joining = b.homeserver.remote_membership
    client = b.homeserver.federation_client
    joiners = iter(f"@{name}:{b.server_name}" for name in ("bob", "bea", "bill"))

    def send_join(room_id: str, omit: bool) -> tuple[Any, Any]:
        joiner = next(joiners)  # each a first join: B has no member before it

        async def run() -> tuple[Any, Any]:
            template, version, _ = await joining._make("join", room_id, joiner, [a.server_name])
            event = joining._sign_template(template, version, {})
            answer = await client.put_json(
                a.server_name,
                federation_path("/_matrix/federation/v2/send_join/%s/%s", room_id, event.event_id),
                args={"omit_members": "true" if omit else "false"},
                data=serialize_for_federation(event),
            )
            return event, answer

        return b.run_sync(run())

    def members_in(answer: Any) -> set[str]:
        return {e["state_key"] for e in answer["state"] if e["type"] == "m.room.member"}

    version = KNOWN_ROOM_VERSIONS["10"]

    def check_auth_chain_covers(event: Any, answer: Any) -> None:
        """Every returned event's auth events are returned; with omit_members, nothing
        twice."""
        state = [make_event(pdu, version) for pdu in answer["state"]]
        chain = [make_event(pdu, version) for pdu in answer["auth_chain"]]
        state_ids = {e.event_id for e in state}
        chain_ids = {e.event_id for e in chain}
        if answer["members_omitted"]:
            assert not state_ids & chain_ids
        for held in [*state, *chain, event]:
            assert set(held.auth_event_ids) <= state_ids | chain_ids

    everyone = {alice.user_id, *(u.user_id for u in others)}
    event, reduced = send_join(named, omit=True)
    assert reduced["members_omitted"] is True
    assert reduced["servers_in_room"] == [a.server_name]
    # The member events the other events' auth needs (the creator's...) come in
    # auth_chain, not in state.
    assert members_in(reduced) == set()
    assert {e["type"] for e in reduced["state"]} >= {
        "m.room.create",
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.name",
    }
    check_auth_chain_covers(event, reduced)

    # Without a name, the heroes' member events (the first five members) are kept.
    event, heroes = send_join(unnamed, omit=True)
    assert heroes["members_omitted"] is True
    assert heroes["servers_in_room"] == [a.server_name]
    assert members_in(heroes) == {alice.user_id, *(u.user_id for u in others[:4])}
    check_auth_chain_covers(event, heroes)

    # Without omit_members: every member, B's first joiner too.
    event, full = send_join(named, omit=False)
    assert full["members_omitted"] is False
    assert members_in(full) == everyone | {f"@bob:{b.server_name}"}
    assert sorted(full["servers_in_room"]) == sorted([a.server_name, b.server_name])
    check_auth_chain_covers(event, full)
    assert len(reduced["state"]) + len(reduced["auth_chain"]) < len(full["state"]) + len(
        full["auth_chain"]
    )
