"""Federation scenarios between two homeservers, written against the Client-Server API only.

Each function takes the side whose user makes the room (``home``) and the side of the user
who comes to it from elsewhere (``away``), and asserts what both sides show their users.
test_federation_synapse.py runs them between Hearth and Synapse in both directions,
test_federation_hearth_pair.py between two Hearth servers.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    MegolmEvent,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

from tests.interop.federation_sides import (
    WAIT_SECONDS,
    Account,
    Side,
    q,
    state_map,
    wait_for,
    wait_membership,
    wait_text,
)


def joined_pair(home: Side, away: Side, **room: Any) -> tuple[Account, Account, str]:
    """alice (home) makes a public room, bob (away) joins it by ID through alice's server."""
    alice, bob = home.register("alice"), away.register("bob")
    room_id = alice.create_room(preset="public_chat", **room)
    assert bob.join(room_id, via=home) == room_id
    wait_membership(alice, room_id, bob, "join")
    assert bob.membership_of(room_id, alice) == "join"
    return alice, bob, room_id


def wait_joined_in_sync(user: Account, room_id: str) -> None:
    """Wait for the room in the user's /sync join section. Synapse joins a remote room with
    partial state (the resident server omits members, as Synapse asks) and leaves the room
    out of /sync until it has fetched the full state (/state_ids, /state), just after the
    join returns."""
    wait_for(lambda: user.sync_section(room_id) == "join", f"the room joined in {user}'s /sync")


def converged(alice: Account, bob: Account, room_id: str) -> dict[tuple[str, str], str]:
    """Wait until both sides' /state name the same events; that state."""

    def same() -> dict[tuple[str, str], str] | None:
        mine, theirs = state_map(alice.full_state(room_id)), state_map(bob.full_state(room_id))
        return mine if mine == theirs else None

    try:
        result: dict[tuple[str, str], str] = wait_for(same, "both sides' /state to agree")
    except AssertionError:
        mine, theirs = state_map(alice.full_state(room_id)), state_map(bob.full_state(room_id))
        differing = {
            key: (mine.get(key), theirs.get(key))
            for key in mine.keys() | theirs.keys()
            if mine.get(key) != theirs.get(key)
        }
        raise AssertionError(
            f"/state differs ({alice.side.label} vs {bob.side.label}): {differing}"
        ) from None
    return result


# --- rooms, invites, messages ----------------------------------------------------------------


def create_and_join(home: Side, away: Side) -> None:
    alice, bob = home.register("alice"), away.register("bob")
    room_id = alice.create_room(preset="public_chat", name="Over the wire", topic="Hello")
    alice.send_text(room_id, "before bob")

    assert bob.join(room_id, via=home) == room_id
    wait_membership(alice, room_id, bob, "join")
    assert bob.membership_of(room_id, alice) == "join"
    assert bob.state_content(room_id, "m.room.name") == {"name": "Over the wire"}
    assert (bob.state_content(room_id, "m.room.topic") or {}).get("topic") == "Hello"
    assert room_id in bob.ok("GET", "/joined_rooms")["joined_rooms"]
    wait_joined_in_sync(bob, room_id)

    bob.send_text(room_id, f"hello from {away.label}")
    wait_text(alice, room_id, f"hello from {away.label}")
    alice.send_text(room_id, f"hello from {home.label}")
    wait_text(bob, room_id, f"hello from {home.label}")

    # Both timelines end with the same two messages in the same order, in /messages and /sync.
    ending = [f"hello from {away.label}", f"hello from {home.label}"]
    assert alice.texts(room_id)[-2:] == ending
    assert bob.texts(room_id)[-2:] == ending
    for viewer in (alice, bob):
        synced = [e.get("content", {}).get("body") for e in viewer.synced_timeline(room_id)]
        assert [b for b in synced if b in ending] == ending, (str(viewer), synced)
    joined = alice.ok("GET", f"/rooms/{q(room_id)}/joined_members")["joined"]
    assert set(joined) == {alice.user_id, bob.user_id}
    joined = bob.ok("GET", f"/rooms/{q(room_id)}/joined_members")["joined"]
    assert set(joined) == {alice.user_id, bob.user_id}
    converged(alice, bob, room_id)


def invite(home: Side, away: Side) -> None:
    alice, bob = home.register("alice"), away.register("bob")
    room_id = alice.create_room(preset="private_chat", name="By invitation")
    alice.invite(room_id, bob)
    assert alice.membership_of(room_id, bob) == "invite"

    def invited() -> Any:
        return bob.sync()["rooms"].get("invite", {}).get(room_id)

    stripped = wait_for(invited, f"the invite in {bob}'s /sync")["invite_state"]["events"]
    names = [e["content"] for e in stripped if e["type"] == "m.room.name"]
    assert names == [{"name": "By invitation"}]
    own = [e for e in stripped if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert own and own[0]["content"]["membership"] == "invite", stripped
    assert own[0]["sender"] == alice.user_id

    assert bob.ok("POST", f"/rooms/{q(room_id)}/join") == {"room_id": room_id}
    wait_membership(alice, room_id, bob, "join")
    assert bob.membership_of(room_id, alice) == "join"
    wait_joined_in_sync(bob, room_id)
    bob.send_text(room_id, "thanks for having me")
    wait_text(alice, room_id, "thanks for having me")
    alice.send_text(room_id, "you are welcome")
    wait_text(bob, room_id, "you are welcome")
    converged(alice, bob, room_id)


def messages_both_ways(home: Side, away: Side) -> None:
    """A conversation: several messages from each side, interleaved, same order on both."""
    alice, bob, room_id = joined_pair(home, away)
    expected = []
    for i in range(4):
        text = f"{home.label} says {i}"
        alice.send_text(room_id, text)
        wait_text(bob, room_id, text)
        expected.append(text)
        text = f"{away.label} answers {i}"
        bob.send_text(room_id, text)
        wait_text(alice, room_id, text)
        expected.append(text)
    assert alice.texts(room_id) == expected
    assert bob.texts(room_id) == expected
    # Every event has one ID on both sides: the last one of each timeline is the same.
    assert alice.messages(room_id)[0]["event_id"] == bob.messages(room_id)[0]["event_id"]


# --- state changes -------------------------------------------------------------------------


def topic_and_power_levels(home: Side, away: Side) -> None:
    alice, bob, room_id = joined_pair(home, away, name="Levels")
    alice.put_state(room_id, "m.room.topic", {"topic": f"set on {home.label}"})
    wait_for(
        lambda: bob.state_content(room_id, "m.room.topic") == {"topic": f"set on {home.label}"},
        f"the topic on {away.label}",
    )
    # bob may not change the topic yet (state_default 50 in a public_chat room).
    refused = bob.call("PUT", f"/rooms/{q(room_id)}/state/m.room.topic/", {"topic": "not allowed"})
    assert refused.status == 403, refused.body

    levels = alice.state_content(room_id, "m.room.power_levels")
    assert levels is not None
    levels["users"][bob.user_id] = 50
    alice.put_state(room_id, "m.room.power_levels", levels)

    def bobs_level() -> Any:
        seen = bob.state_content(room_id, "m.room.power_levels") or {}
        return seen.get("users", {}).get(bob.user_id) == 50

    wait_for(bobs_level, f"bob's power level on {away.label}")
    bob.put_state(room_id, "m.room.topic", {"topic": f"set on {away.label}"})
    wait_for(
        lambda: alice.state_content(room_id, "m.room.topic") == {"topic": f"set on {away.label}"},
        f"bob's topic on {home.label}",
    )
    # 50 is not enough to change the power levels themselves (100 by default).
    levels["users"][bob.user_id] = 100
    refused = bob.call("PUT", f"/rooms/{q(room_id)}/state/m.room.power_levels/", levels)
    assert refused.status == 403, refused.body
    state = converged(alice, bob, room_id)
    assert ("m.room.topic", "") in state


# --- membership changes ------------------------------------------------------------------


def kick_and_ban(home: Side, away: Side) -> None:
    alice, bob, room_id = joined_pair(home, away)

    alice.ok("POST", f"/rooms/{q(room_id)}/kick", {"user_id": bob.user_id, "reason": "out"})
    assert alice.membership_of(room_id, bob) == "leave"
    wait_for(lambda: bob.sync_section(room_id) == "leave", f"the kick in {bob}'s /sync")
    assert bob.membership_of(room_id, bob) == "leave"

    # Kicked users may come back; banned ones may not.
    assert bob.join(room_id, via=home) == room_id
    wait_membership(alice, room_id, bob, "join")
    alice.ok("POST", f"/rooms/{q(room_id)}/ban", {"user_id": bob.user_id, "reason": "gone"})
    assert alice.membership_of(room_id, bob) == "ban"
    wait_for(lambda: bob.sync_section(room_id) == "leave", f"the ban in {bob}'s /sync")
    assert _left_by(bob, room_id) == "ban"
    again = bob.call("POST", f"/join/{q(room_id)}?server_name={q(home.server_name)}")
    assert again.status == 403, again.body
    assert alice.membership_of(room_id, bob) == "ban"

    # Unbanned, bob comes back as a moderator and kicks and bans users of alice's server.
    alice.ok("POST", f"/rooms/{q(room_id)}/unban", {"user_id": bob.user_id})
    assert bob.join(room_id, via=home) == room_id
    wait_membership(alice, room_id, bob, "join")
    carol, dave = home.register("carol"), home.register("dave")
    carol.join(room_id)
    dave.join(room_id)
    levels = alice.state_content(room_id, "m.room.power_levels")
    assert levels is not None
    levels["users"][bob.user_id] = 50
    alice.put_state(room_id, "m.room.power_levels", levels)
    wait_membership(bob, room_id, dave, "join")

    def bob_is_moderator() -> bool:
        seen = bob.state_content(room_id, "m.room.power_levels") or {}
        return bool(seen.get("users", {}).get(bob.user_id) == 50)

    wait_for(bob_is_moderator, f"bob's power level on {away.label}")
    bob.ok("POST", f"/rooms/{q(room_id)}/kick", {"user_id": carol.user_id})
    wait_membership(alice, room_id, carol, "leave")
    wait_for(lambda: carol.sync_section(room_id) == "leave", "carol's kick in her /sync")
    bob.ok("POST", f"/rooms/{q(room_id)}/ban", {"user_id": dave.user_id})
    wait_membership(alice, room_id, dave, "ban")
    refused = dave.call("POST", f"/join/{q(room_id)}")
    assert refused.status == 403, refused.body
    converged(alice, bob, room_id)


def _left_by(viewer: Account, room_id: str) -> str | None:
    """The membership that ended the viewer's time in the room, from /sync's leave section
    (a banned user may not read the room's state on Synapse, so /state cannot tell)."""
    rooms = viewer.sync(filter_='{"room":{"include_leave":true}}')["rooms"]
    events = rooms.get("leave", {}).get(room_id, {}).get("timeline", {}).get("events", [])
    own = [
        e for e in events if e["type"] == "m.room.member" and e.get("state_key") == viewer.user_id
    ]
    return own[-1]["content"]["membership"] if own else None


def leave_and_rejoin(home: Side, away: Side) -> None:
    alice, bob, room_id = joined_pair(home, away)
    bob.send_text(room_id, "see you")
    wait_text(alice, room_id, "see you")

    bob.leave(room_id)
    wait_membership(alice, room_id, bob, "leave")
    assert bob.sync_section(room_id) == "leave"
    assert room_id not in bob.ok("GET", "/joined_rooms")["joined_rooms"]
    alice.send_text(room_id, "while bob was away")

    assert bob.join(room_id, via=home) == room_id
    wait_membership(alice, room_id, bob, "join")
    assert bob.membership_of(room_id, bob) == "join"
    wait_joined_in_sync(bob, room_id)
    bob.send_text(room_id, "back again")
    wait_text(alice, room_id, "back again")
    alice.send_text(room_id, "welcome back")
    wait_text(bob, room_id, "welcome back")
    # The room as a whole went on while bob was away: he can read what he missed.
    wait_text(bob, room_id, "while bob was away")
    converged(alice, bob, room_id)


# --- EDUs and queries --------------------------------------------------------------------


def _ephemeral(viewer: Account, room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = viewer.sync()["rooms"].get("join", {}).get(room_id, {})
    events = room.get("ephemeral", {}).get("events", [])
    return [e for e in events if e["type"] == event_type]


def _typing(viewer: Account, room_id: str) -> set[str]:
    users: set[str] = set()
    for event in _ephemeral(viewer, room_id, "m.typing"):
        users.update(event["content"].get("user_ids", []))
    return users


def _read_by(viewer: Account, room_id: str, event_id: str) -> set[str]:
    readers: set[str] = set()
    for event in _ephemeral(viewer, room_id, "m.receipt"):
        readers.update(event["content"].get(event_id, {}).get("m.read", {}))
    return readers


def typing_and_receipts(home: Side, away: Side) -> None:
    alice, bob, room_id = joined_pair(home, away)

    for typist, watcher in ((bob, alice), (alice, bob)):
        typist.ok(
            "PUT",
            f"/rooms/{q(room_id)}/typing/{q(typist.user_id)}",
            {"typing": True, "timeout": 30000},
        )
        wait_for(
            lambda t=typist, w=watcher: t.user_id in _typing(w, room_id),  # type: ignore[misc]
            f"{typist} typing, as {watcher.side.label} shows it",
        )
        typist.ok("PUT", f"/rooms/{q(room_id)}/typing/{q(typist.user_id)}", {"typing": False})
        wait_for(
            lambda t=typist, w=watcher: t.user_id not in _typing(w, room_id),  # type: ignore[misc]
            f"{typist} no longer typing, as {watcher.side.label} shows it",
        )

    for writer, reader in ((alice, bob), (bob, alice)):
        text = f"read me, {reader.user_id}"
        event_id = writer.send_text(room_id, text)
        wait_text(reader, room_id, text)
        reader.ok("POST", f"/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {})
        wait_for(
            lambda e=event_id, w=writer, r=reader: r.user_id in _read_by(w, room_id, e),  # type: ignore[misc]
            f"{reader}'s read receipt, as {writer.side.label} shows it",
        )


def profile_query(home: Side, away: Side) -> None:
    alice, bob = home.register("alice"), away.register("bob")
    bob.ok("PUT", f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bob Elsewhere"})
    alice.ok("PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice Home"})

    profile = alice.ok("GET", f"/profile/{q(bob.user_id)}")
    assert profile.get("displayname") == "Bob Elsewhere", profile
    shown = alice.ok("GET", f"/profile/{q(bob.user_id)}/displayname")
    assert shown == {"displayname": "Bob Elsewhere"}
    profile = bob.ok("GET", f"/profile/{q(alice.user_id)}")
    assert profile.get("displayname") == "Alice Home", profile

    missing = alice.call("GET", f"/profile/{q('@nobody_here:' + away.server_name)}")
    assert missing.status == 404, missing.body
    assert missing.json()["errcode"] == "M_NOT_FOUND"


def remote_alias_join(home: Side, away: Side) -> None:
    alice, bob = home.register("alice"), away.register("bob")
    localpart = f"lobby{time.monotonic_ns() % 10**9}"
    room_id = alice.create_room(preset="public_chat", room_alias_name=localpart)
    alias = f"#{localpart}:{home.server_name}"

    looked_up = bob.ok("GET", f"/directory/room/{q(alias)}")
    assert looked_up["room_id"] == room_id
    assert home.server_name in looked_up["servers"]

    assert bob.join(alias) == room_id
    wait_membership(alice, room_id, bob, "join")
    assert bob.membership_of(room_id, alice) == "join"
    canonical = bob.state_content(room_id, "m.room.canonical_alias")
    assert canonical is not None and canonical["alias"] == alias

    unknown = bob.call("POST", f"/join/{q('#nowhere_at_all:' + home.server_name)}")
    assert unknown.status == 404, unknown.body
    assert unknown.json()["errcode"] == "M_NOT_FOUND"


def backfill_for_late_joiner(home: Side, away: Side) -> None:
    alice, bob = home.register("alice"), away.register("bob")
    room_id = alice.create_room(preset="public_chat", name="History")
    alice.put_state(room_id, "m.room.history_visibility", {"history_visibility": "shared"})
    history = [f"old message {i}" for i in range(30)]
    for text in history:
        alice.send_text(room_id, text)

    bob.join(room_id, via=home)
    wait_membership(alice, room_id, bob, "join")
    bob.send_text(room_id, "i am new here")
    wait_text(alice, room_id, "i am new here")

    # Bob pages back from the end to the room's creation, ten events at a time.
    seen: list[dict[str, Any]] = []
    path = f"/rooms/{q(room_id)}/messages?dir=b&limit=10"
    token = None
    for _ in range(20):
        page = bob.ok("GET", path + (f"&from={q(token)}" if token else ""))
        seen.extend(page["chunk"])
        token = page.get("end")
        if not page["chunk"] or token is None:
            break
    types = [e["type"] for e in seen]
    assert "m.room.create" in types, types
    texts = [
        e["content"]["body"]
        for e in reversed(seen)
        if e["type"] == "m.room.message" and "body" in e["content"]
    ]
    assert texts == [*history, "i am new here"]
    assert texts == alice.texts(room_id, limit=100)
    ids = [e["event_id"] for e in seen]
    assert len(ids) == len(set(ids)), "an event came twice"
    theirs = [e["event_id"] for e in alice.messages(room_id, limit=100)]
    assert ids[: len(theirs)] == theirs


# --- end-to-end encryption with matrix-nio -------------------------------------------------

ENCRYPTION = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


def encrypted_conversation(home: Side, away: Side, stores: Path) -> None:
    alice, bob = home.register("alice"), away.register("bob")
    asyncio.run(_encrypted(home, alice, away, bob, stores))


def _nio(side: Side, account: Account, store: Path) -> AsyncClient:
    store.mkdir(parents=True, exist_ok=True)
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    # Hearth's test listener has a self-signed certificate: ssl=False skips the check.
    client = AsyncClient(
        side.base_url,
        account.user_id,
        device_id=account.device_id,
        store_path=str(store),
        config=config,
        ssl=False if side.base_url.startswith("https") else None,
    )
    client.restore_login(account.user_id, account.device_id, account.token)
    return client


async def _settle(client: AsyncClient, timeout_ms: int = 0) -> SyncResponse:
    synced = await client.sync(timeout=timeout_ms)
    assert isinstance(synced, SyncResponse), synced
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    return synced


async def _until(client: AsyncClient, room_id: str, wanted: str) -> list[str]:
    """Sync until ``wanted`` arrives decrypted; every text seen (undecryptable: MEGOLM)."""
    seen: list[str] = []
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        synced = await _settle(client, timeout_ms=500)
        room = synced.rooms.join.get(room_id)
        for event in room.timeline.events if room is not None else []:
            if isinstance(event, RoomMessageText):
                assert event.decrypted, "a message in an encrypted room arrived in clear"
                seen.append(event.body)
            elif isinstance(event, MegolmEvent):
                seen.append("MEGOLM")
        if wanted in seen:
            break
    return seen


async def _send(client: AsyncClient, room_id: str, body: str) -> None:
    # Keys of the other side's devices come over federation (/user/keys/query); nio needs
    # them before it can share the room key.
    if client.should_query_keys:
        await client.keys_query()
    sent = await client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": body},
        ignore_unverified_devices=True,
    )
    assert isinstance(sent, RoomSendResponse), sent


async def _knows_devices(client: AsyncClient, user_id: str, device_id: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while device_id not in client.device_store[user_id]:
        assert time.monotonic() < deadline, f"{client.user_id} never learnt of {device_id}"
        client.users_for_key_query.add(user_id)
        await client.keys_query()
        if device_id not in client.device_store[user_id]:
            await asyncio.sleep(0.3)


async def _encrypted(home: Side, alice: Account, away: Side, bob: Account, stores: Path) -> None:
    alice_nio = _nio(home, alice, stores / "alice")
    bob_nio = _nio(away, bob, stores / "bob")
    try:
        await _settle(alice_nio)
        await _settle(bob_nio)
        created = await alice_nio.room_create(name="secret", initial_state=[ENCRYPTION])
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id
        invited = await alice_nio.room_invite(room_id, bob.user_id)
        assert isinstance(invited, RoomInviteResponse), invited
        wait_for(
            lambda: room_id in bob.sync()["rooms"].get("invite", {}),
            f"the invite on {away.label}",
        )
        joined = await bob_nio.join(room_id)
        assert isinstance(joined, JoinResponse), joined
        wait_membership(alice, room_id, bob, "join")
        wait_joined_in_sync(bob, room_id)
        deadline = time.monotonic() + WAIT_SECONDS
        while room_id not in bob_nio.rooms or room_id not in alice_nio.rooms:
            assert time.monotonic() < deadline, "the room never reached both nio clients"
            await _settle(bob_nio, timeout_ms=200)
            await _settle(alice_nio, timeout_ms=200)
        assert alice_nio.rooms[room_id].encrypted and bob_nio.rooms[room_id].encrypted

        # Each learns the other's device through the other's server (/keys/query over
        # federation), claims a one-time key of it (/keys/claim) and sends the room key.
        await _knows_devices(alice_nio, bob.user_id, bob.device_id)
        await _knows_devices(bob_nio, alice.user_id, alice.device_id)

        await _send(alice_nio, room_id, f"hello from {home.label}, secretly")
        seen = await _until(bob_nio, room_id, f"hello from {home.label}, secretly")
        assert f"hello from {home.label}, secretly" in seen, seen
        await _send(bob_nio, room_id, f"hello from {away.label}, secretly")
        seen = await _until(alice_nio, room_id, f"hello from {away.label}, secretly")
        assert f"hello from {away.label}, secretly" in seen, seen

        # Neither server saw the text: what it stores is the Megolm ciphertext.
        raw = alice.messages(room_id)
        assert all(e["type"] != "m.room.message" for e in raw), raw
        assert any(e["type"] == "m.room.encrypted" for e in raw)
    finally:
        await alice_nio.close()
        await bob_nio.close()
