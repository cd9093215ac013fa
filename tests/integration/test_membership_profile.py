"""A profile change reaches the member events; a deactivated user leaves every room."""

from __future__ import annotations

from typing import Any

from tests.integration.rooms_helpers import User, alice, bob, quote, server

__all__ = ["alice", "bob", "server"]  # fixtures


def test_profile_change_updates_joined_rooms(alice: User, bob: User) -> None:
    first = alice.create_room(preset="public_chat")
    second = alice.create_room(preset="public_chat")
    left = alice.create_room(preset="public_chat")
    for room_id in (first, second, left):
        bob.join(room_id)
    bob.membership(left, "leave", {})
    bob.ok("PUT", f"/profile/{quote(bob.user_id)}/displayname", {"displayname": "Robert"})
    bob.ok("PUT", f"/profile/{quote(bob.user_id)}/avatar_url", {"avatar_url": "mxc://hs.test/r"})
    for room_id in (first, second):
        assert alice.state(room_id, "m.room.member", bob.user_id).json() == {
            "membership": "join",
            "displayname": "Robert",
            "avatar_url": "mxc://hs.test/r",
        }
    assert alice.state(left, "m.room.member", bob.user_id).json() == {"membership": "leave"}
    joined = alice.ok("GET", f"/rooms/{quote(first)}/joined_members")["joined"]
    assert joined[bob.user_id] == {"display_name": "Robert", "avatar_url": "mxc://hs.test/r"}
    # Unsetting the display name removes it from the member events.
    bob.ok("DELETE", f"/profile/{quote(bob.user_id)}/displayname")
    assert alice.state(first, "m.room.member", bob.user_id).json() == {
        "membership": "join",
        "avatar_url": "mxc://hs.test/r",
    }


def test_deactivation_leaves_every_room(alice: User, bob: User) -> None:
    joined = alice.create_room(preset="public_chat")
    invited = alice.create_room(invite=[bob.user_id])
    bob.join(joined)
    body: dict[str, Any] = {"auth": {}}
    first = bob.request("POST", "/account/deactivate", body)
    assert first.status == 401
    body = {
        "auth": {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "bob"},
            "password": "correct horse battery",
            "session": first.json().get("session"),
        }
    }
    assert bob.request("POST", "/account/deactivate", body).status == 200
    assert alice.state(joined, "m.room.member", bob.user_id).json()["membership"] == "leave"
    assert alice.state(invited, "m.room.member", bob.user_id).json()["membership"] == "leave"
    members = alice.ok("GET", f"/rooms/{quote(joined)}/joined_members")["joined"]
    assert list(members) == [alice.user_id]
