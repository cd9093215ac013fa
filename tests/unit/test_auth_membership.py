"""Rules for m.room.member: join, invite (incl. third-party), leave/kick/unban, ban, knock."""

from __future__ import annotations

import pytest
from signedjson.key import generate_signing_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from homeserver.auth import AuthError
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from tests.unit.auth_fixtures import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    DAVE,
    Room,
    standard_room,
    versions,
)

V_KNOCK = versions(lambda rv: rv.knock_join_rule)
V_NO_KNOCK = versions(lambda rv: not rv.knock_join_rule)
V_RESTRICTED = versions(lambda rv: rv.restricted_join_rule)
V_NO_RESTRICTED = versions(lambda rv: not rv.restricted_join_rule)
V_KNOCK_RESTRICTED = versions(lambda rv: rv.knock_restricted_join_rule)
V_NO_KNOCK_RESTRICTED = versions(lambda rv: not rv.knock_restricted_join_rule)


def allowed(room: Room, event) -> None:
    room.check(event)


def rejected(room: Room, event, match: str) -> None:
    with pytest.raises(AuthError, match=match):
        room.check(event)


# --- basic shape ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_member_event_needs_state_key_and_membership(version: str) -> None:
    room = standard_room(version)
    no_key = room.event("m.room.member", BOB, {"membership": "join"})
    with pytest.raises(AuthError, match=r"m.room.member: the event has no state_key"):
        room.check(no_key)
    no_membership = room.event("m.room.member", BOB, {}, state_key=BOB)
    rejected(room, no_membership, "m.room.member: content has no membership")


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("membership", ["foo", "JOIN", None, 1])
def test_unknown_membership_is_rejected(version: str, membership: object) -> None:
    room = standard_room(version)
    rejected(room, room.member(BOB, membership), "unknown membership")  # type: ignore[arg-type]


@pytest.mark.parametrize("version", V_NO_KNOCK)
def test_knock_is_an_unknown_membership_before_v7(version: str) -> None:
    room = standard_room(version, join_rule="knock")
    rejected(room, room.member(BOB, "knock"), "unknown membership 'knock'")


# --- join -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_creator_first_join(version: str) -> None:
    room = Room(version)
    allowed(room, room.member(ALICE, "join", prev_events=[room.create.event_id]))
    # not right after the create event: the ordinary rules apply (no join rules: invite)
    rejected(
        room,
        room.member(ALICE, "join", prev_events=[room.create.event_id, "$other"]),
        "join: the join rule is invite",
    )
    # only the creator gets in that way
    rejected(
        room,
        room.member(BOB, "join", prev_events=[room.create.event_id]),
        "join: the join rule is invite",
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_creator_first_join_uses_creator_property_or_sender(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    # alice sends the create event, naming bob as creator (only meaningful before v11)
    room = Room(version, create_content={"creator": BOB, "room_version": version})
    bob_join = room.member(BOB, "join", prev_events=[room.create.event_id])
    alice_join = room.member(ALICE, "join", prev_events=[room.create.event_id])
    if rv.implicit_room_creator:
        allowed(room, alice_join)
        rejected(room, bob_join, "join: the join rule is invite")
    else:
        allowed(room, bob_join)
        rejected(room, alice_join, "join: the join rule is invite")


@pytest.mark.parametrize("version", versions(lambda rv: rv.creators_have_infinite_power))
def test_v12_additional_creator_has_no_first_join(version: str) -> None:
    room = Room(version, create_content={"additional_creators": [BOB]})
    rejected(
        room,
        room.member(BOB, "join", prev_events=[room.create.event_id]),
        "join: the join rule is invite",
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_join_sender_must_match_state_key(version: str) -> None:
    room = standard_room(version)
    allowed(room, room.member(BOB, "join"))
    rejected(room, room.member(BOB, "join", sender=ALICE), "join: the sender does not match")


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("join_rule", ["public", "invite"])
def test_banned_user_cannot_join(version: str, join_rule: str) -> None:
    room = standard_room(version, join_rule=join_rule)
    room.set_member(BOB, "ban", sender=ALICE)
    rejected(room, room.member(BOB, "join"), "join: the sender is banned")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_public_join(version: str) -> None:
    room = standard_room(version, join_rule="public")
    allowed(room, room.member(BOB, "join"))
    room.set_member(BOB, "leave")
    allowed(room, room.member(BOB, "join"))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_invite_only_join(version: str) -> None:
    room = standard_room(version, join_rule="invite")
    rejected(room, room.member(BOB, "join"), "join: the join rule is invite and the sender is not")
    room.set_member(BOB, "invite", sender=ALICE)
    allowed(room, room.member(BOB, "join"))
    room.set_member(BOB, "join")
    # already joined: a profile change is a join too
    allowed(room, room.member(BOB, "join", content={"displayname": "Bob"}))
    room.set_member(BOB, "leave")
    rejected(room, room.member(BOB, "join"), "join: the join rule is invite")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_join_without_join_rules_is_invite_only(version: str) -> None:
    room = standard_room(version, join_rule=None)
    rejected(room, room.member(BOB, "join"), "join: the join rule is invite")
    room.set_member(BOB, "invite", sender=ALICE)
    allowed(room, room.member(BOB, "join"))


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("join_rule", ["private", "nonsense", 5])
def test_unknown_join_rule_rejects_join(version: str, join_rule: object) -> None:
    room = standard_room(version, join_rule=join_rule)  # type: ignore[arg-type]
    room.set_member(BOB, "invite", sender=ALICE)
    rejected(room, room.member(BOB, "join"), "join: the join rule .* does not allow")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_knock_join_rule_join(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    room = standard_room(version, join_rule="knock")
    rejected(room, room.member(BOB, "join"), "join: the join rule")
    room.set_member(BOB, "invite", sender=ALICE)
    if rv.knock_join_rule:
        allowed(room, room.member(BOB, "join"))
    else:
        rejected(room, room.member(BOB, "join"), "join: the join rule 'knock' does not allow")


def restricted_room(version: str, join_rule: str = "restricted") -> Room:
    room = standard_room(
        version,
        join_rule=join_rule,
        users={CAROL: 50, DAVE: 0}
        if KNOWN_ROOM_VERSIONS[version].creators_have_infinite_power
        else {ALICE: 100, CAROL: 50, DAVE: 0},
        extra_levels={"invite": 50},
    )
    room.set_member(CAROL, "join")
    room.set_member(DAVE, "join")
    return room


def authorised_join(room: Room, authoriser: str = CAROL, signed: bool = True):
    server = authoriser.partition(":")[2]
    return room.member(
        BOB,
        "join",
        content={"join_authorised_via_users_server": authoriser},
        signed_by=[server] if signed else [],
    )


@pytest.mark.parametrize("join_rule", ["restricted", "knock_restricted"])
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_restricted_join(version: str, join_rule: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    supported = (
        rv.restricted_join_rule if join_rule == "restricted" else (rv.knock_restricted_join_rule)
    )
    room = restricted_room(version, join_rule)
    if not supported:
        rejected(room, authorised_join(room), f"join: the join rule '{join_rule}' does not allow")
        return
    allowed(room, authorised_join(room))
    rejected(room, room.member(BOB, "join"), "restricted join: .*neither invited nor names")
    # the authoriser must be joined
    rejected(room, authorised_join(room, BOB.replace("bob", "zed")), "not a joined member")
    room.set_member(CAROL, "leave")
    rejected(room, authorised_join(room), "restricted join: .*is not a joined member")
    room.set_member(CAROL, "join")
    # ... and able to invite
    rejected(room, authorised_join(room, DAVE), "restricted join: .*does not have the power")
    # ... and its server must have signed the join
    rejected(room, authorised_join(room, signed=False), "not signed by the server of join_author")
    # invited or joined users need no authoriser
    room.set_member(BOB, "invite", sender=ALICE)
    allowed(room, room.member(BOB, "join"))
    room.set_member(BOB, "join")
    allowed(room, room.member(BOB, "join"))
    # bans still win
    room.set_member(BOB, "ban", sender=ALICE)
    rejected(room, authorised_join(room), "join: the sender is banned")


@pytest.mark.parametrize("version", V_RESTRICTED)
def test_authoriser_signature_needed_on_any_membership(version: str) -> None:
    room = standard_room(version)
    room.set_member(BOB, "join")
    leave = room.member(BOB, "leave", content={"join_authorised_via_users_server": CAROL})
    rejected(room, leave, "not signed by the server of join_authorised_via_users_server")
    bad_type = room.member(BOB, "leave", content={"join_authorised_via_users_server": 5})
    rejected(room, bad_type, "not signed by the server of join_authorised_via_users_server")


@pytest.mark.parametrize("version", V_NO_RESTRICTED)
def test_authoriser_key_means_nothing_before_v8(version: str) -> None:
    room = standard_room(version)
    allowed(room, room.member(BOB, "join", content={"join_authorised_via_users_server": CAROL}))


# --- invite -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_invite(version: str) -> None:
    room = standard_room(version, join_rule="invite")
    allowed(room, room.member(BOB, "invite", sender=ALICE))
    # the sender must be joined
    rejected(room, room.member(CAROL, "invite", sender=DAVE), "invite: the sender is not joined")
    room.set_member(DAVE, "invite", sender=ALICE)
    rejected(room, room.member(CAROL, "invite", sender=DAVE), "invite: the sender is not joined")


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("target_membership", ["join", "ban"])
def test_invite_target_joined_or_banned(version: str, target_membership: str) -> None:
    room = standard_room(version)
    room.set_member(BOB, target_membership, sender=ALICE if target_membership == "ban" else BOB)
    rejected(
        room,
        room.member(BOB, "invite", sender=ALICE),
        f"invite: the target user's membership is {target_membership}",
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("target_membership", ["leave", "invite", "knock"])
def test_invite_target_in_other_states(version: str, target_membership: str) -> None:
    room = standard_room(version)
    room.set_member(BOB, target_membership)
    allowed(room, room.member(BOB, "invite", sender=ALICE))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_invite_needs_invite_level(version: str) -> None:
    room = standard_room(version, extra_levels={"invite": 50})
    room.set_member(DAVE, "join")
    rejected(
        room, room.member(BOB, "invite", sender=DAVE), "invite: the sender's power level 0 is below"
    )
    allowed(room, room.member(BOB, "invite", sender=ALICE))


# --- third-party invites ----------------------------------------------------------------

SIGNING_KEY = generate_signing_key("1")
PUBLIC_KEY = encode_base64(SIGNING_KEY.verify_key.encode())
OTHER_KEY = generate_signing_key("2")


def third_party_room(version: str, *, public_keys_list: bool = False) -> Room:
    room = standard_room(version)
    if public_keys_list:
        content = {
            "display_name": "b...@example.com",
            "key_validity_url": "https://id.test/isvalid",
            "public_key": encode_base64(OTHER_KEY.verify_key.encode()),
            "public_keys": [{"public_key": PUBLIC_KEY}],
        }
    else:
        content = {
            "display_name": "b...@example.com",
            "key_validity_url": "https://id.test/isvalid",
            "public_key": PUBLIC_KEY,
        }
    room.add(room.event("m.room.third_party_invite", ALICE, content, state_key="tok"))
    return room


def signed_block(mxid: str = BOB, token: str = "tok", key=SIGNING_KEY) -> dict:
    return sign_json({"mxid": mxid, "token": token, "sender": ALICE}, "id.test", key)


def tp_invite(room: Room, third_party_invite: object, sender: str = ALICE, target: str = BOB):
    return room.member(
        target,
        "invite",
        sender=sender,
        content={"third_party_invite": third_party_invite},
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("public_keys_list", [False, True])
def test_third_party_invite_allowed(version: str, public_keys_list: bool) -> None:
    room = third_party_room(version, public_keys_list=public_keys_list)
    allowed(room, tp_invite(room, {"display_name": "b", "signed": signed_block()}))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_rejections(version: str) -> None:
    room = third_party_room(version)
    rejected(room, tp_invite(room, {"display_name": "b"}), "third-party invite: .*no signed")
    rejected(room, tp_invite(room, "junk"), "third-party invite: .*no signed")
    no_token = signed_block()
    del no_token["token"]
    rejected(room, tp_invite(room, {"signed": no_token}), "signed has no mxid or no token")
    no_mxid = signed_block()
    del no_mxid["mxid"]
    rejected(room, tp_invite(room, {"signed": no_mxid}), "signed has no mxid or no token")
    rejected(
        room,
        tp_invite(room, {"signed": signed_block(mxid=CAROL)}),
        "signed.mxid does not match the state_key",
    )
    rejected(
        room,
        tp_invite(room, {"signed": signed_block(token="other")}),
        "no m.room.third_party_invite event",
    )
    room.set_member(DAVE, "join")
    rejected(
        room,
        tp_invite(room, {"signed": signed_block()}, sender=DAVE),
        "the sender did not send the m.room.third_party_invite",
    )
    rejected(
        room,
        tp_invite(room, {"signed": signed_block(key=OTHER_KEY)}),
        "no signature in signed matches",
    )
    tampered = signed_block()
    tampered["sender"] = CAROL
    rejected(room, tp_invite(room, {"signed": tampered}), "no signature in signed matches")
    unsigned = signed_block()
    del unsigned["signatures"]
    rejected(room, tp_invite(room, {"signed": unsigned}), "no signature in signed matches")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_of_banned_target(version: str) -> None:
    room = third_party_room(version)
    room.set_member(BOB, "ban", sender=ALICE)
    rejected(
        room,
        tp_invite(room, {"signed": signed_block()}),
        "third-party invite: the target user is banned",
    )


# --- leave, kick, unban ---------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("current", ["join", "invite", "knock", "leave", "ban", None])
def test_leaving_yourself(version: str, current: str | None) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    room = standard_room(version)
    if current is not None:
        room.set_member(BOB, current, sender=ALICE if current in ("invite", "ban") else BOB)
    leave = room.member(BOB, "leave")
    may_leave = {"join", "invite"} | ({"knock"} if rv.knock_join_rule else set())
    if current in may_leave:
        allowed(room, leave)
    else:
        rejected(room, leave, "leave: cannot leave with current membership")


def kick_room(version: str, **levels: int) -> Room:
    """alice 100 (or creator), carol 50 (moderator), dave 0, bob joined at 0."""
    rv = KNOWN_ROOM_VERSIONS[version]
    users = {CAROL: 50}
    if not rv.creators_have_infinite_power:
        users[ALICE] = 100
    room = standard_room(version, users=users, extra_levels=levels)
    for user in (BOB, CAROL, DAVE):
        room.set_member(user, "join")
    return room


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_kick(version: str) -> None:
    room = kick_room(version)
    allowed(room, room.member(BOB, "leave", sender=CAROL))
    allowed(room, room.member(CAROL, "leave", sender=ALICE))
    # equal power: no
    users = dict(room.state[("m.room.power_levels", "")].content["users"])
    room.set_power_levels({"users": {**users, BOB: 50}})
    rejected(room, room.member(BOB, "leave", sender=CAROL), "kick: .*more power than the target")
    # below the kick level: no
    rejected(room, room.member(CAROL, "leave", sender=DAVE), "kick: .*needs the kick level 50")
    room2 = kick_room(version, kick=60)
    rejected(room2, room2.member(DAVE, "leave", sender=CAROL), "kick: .*kick level 60")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_kick_needs_sender_joined(version: str) -> None:
    room = kick_room(version)
    room.set_member(CAROL, "leave")
    rejected(room, room.member(BOB, "leave", sender=CAROL), "leave: the sender is not joined")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_unban_needs_ban_level_and_kick_level(version: str) -> None:
    room = kick_room(version, ban=70, kick=40)
    room.set_member(DAVE, "ban", sender=ALICE)
    # carol (50) can kick (40) but not unban (70)
    rejected(room, room.member(DAVE, "leave", sender=CAROL), "unban: .*below the ban level 70")
    allowed(room, room.member(DAVE, "leave", sender=ALICE))
    room = kick_room(version, ban=40, kick=70)
    room.set_member(DAVE, "ban", sender=ALICE)
    # carol (50) can ban (40) but not kick (70): still no unban
    rejected(room, room.member(DAVE, "leave", sender=CAROL), "kick: .*kick level 70")


# --- ban --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_ban(version: str) -> None:
    room = kick_room(version)
    allowed(room, room.member(DAVE, "ban", sender=CAROL))
    # not-yet-members can be banned too
    allowed(room, room.member("@eve:e.test", "ban", sender=CAROL))
    rejected(room, room.member(CAROL, "ban", sender=DAVE), "ban: the sender .*ban level 50")
    rejected(room, room.member(ALICE, "ban", sender=CAROL), "ban: the sender .*more power")
    room = kick_room(version, ban=60)
    rejected(room, room.member(DAVE, "ban", sender=CAROL), "ban: .*ban level 60")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_ban_needs_sender_joined(version: str) -> None:
    room = kick_room(version)
    room.set_member(CAROL, "leave")
    rejected(room, room.member(DAVE, "ban", sender=CAROL), "ban: the sender is not joined")


# --- knock ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", V_KNOCK)
def test_knock(version: str) -> None:
    room = standard_room(version, join_rule="knock")
    allowed(room, room.member(BOB, "knock"))
    room.set_member(BOB, "leave")
    allowed(room, room.member(BOB, "knock"))
    rejected(room, room.member(BOB, "knock", sender=ALICE), "knock: the sender does not match")


@pytest.mark.parametrize("version", V_KNOCK)
@pytest.mark.parametrize("current", ["ban", "invite", "join"])
def test_knock_rejected_when_banned_invited_or_joined(version: str, current: str) -> None:
    room = standard_room(version, join_rule="knock")
    room.set_member(BOB, current, sender=ALICE if current != "join" else BOB)
    rejected(
        room, room.member(BOB, "knock"), f"knock: cannot knock with current membership {current}"
    )


@pytest.mark.parametrize("version", V_KNOCK)
@pytest.mark.parametrize("join_rule", ["public", "invite", "restricted", "private"])
def test_knock_needs_knock_join_rule(version: str, join_rule: str) -> None:
    room = standard_room(version, join_rule=join_rule)
    rejected(room, room.member(BOB, "knock"), "knock: the join rule .* does not allow knocking")


@pytest.mark.parametrize("version", V_KNOCK)
def test_knock_restricted_allows_knocks_from_v10(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    room = standard_room(version, join_rule="knock_restricted")
    if rv.knock_restricted_join_rule:
        allowed(room, room.member(BOB, "knock"))
    else:
        rejected(room, room.member(BOB, "knock"), "knock: the join rule 'knock_restricted'")


# --- m.federate -------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("federate", [False, "false", 0])
def test_unfederated_room_rejects_other_servers(version: str, federate: object) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    content: dict = {"m.federate": federate, "room_version": version}
    if not rv.implicit_room_creator:
        content["creator"] = ALICE
    room = standard_room(version, create_content=content)
    rejected(room, room.member(BOB, "join"), "m.federate")
    allowed(room, room.member("@alice2:a.test", "join"))
    message = room.event("m.room.message", BOB, {"body": "hi"})
    room.set_member(BOB, "join")
    rejected(room, message, "m.federate")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_federate_true_allows_other_servers(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    content: dict = {"m.federate": True}
    if not rv.implicit_room_creator:
        content["creator"] = ALICE
    room = standard_room(version, create_content=content)
    allowed(room, room.member(BOB, "join"))
