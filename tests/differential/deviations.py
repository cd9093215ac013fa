"""Documented places where Synapse departs from the spec, as exact predicates.

Each predicate recognises one class of difference described, with the spec's words,
in ``docs/differential-testing.md``. It does so by removing the one input the
deviation is about and asking Synapse again: the difference is accepted only if
Synapse then agrees with Hearth. Anything else is a mismatch and fails the test.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable, Mapping
from typing import Any

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from synapse.events import EventBase, make_event_from_dict
from unpaddedbase64 import decode_base64

from homeserver.events.hashing import make_event
from homeserver.events.model import Event
from tests.differential import hearth_side
from tests.differential import synapse_oracle as oracle


def _domain(identifier: str) -> str:
    return identifier.partition(":")[2]


def _auth_events(event: EventBase, events: oracle.EventMap) -> list[EventBase]:
    return [events[e] for e in event.auth_event_ids()]


def _recheck(event: EventBase, auth_events: list[EventBase]) -> bool:
    return oracle.check_against_state(event, auth_events)[0]


Neutraliser = Callable[[EventBase, list[EventBase]], tuple[EventBase, list[EventBase]] | None]
"""Given an event and its auth events, the same inputs with one deviation's trigger
removed, or None when the deviation cannot apply to them."""


def federate_target_domain(
    event: EventBase, auth: list[EventBase]
) -> tuple[EventBase, list[EventBase]] | None:
    """Synapse also applies ``m.federate: false`` to the *target* of a membership event.

    Spec (rooms/v1.md ... v12.md, auth rules): "If the content of the m.room.create
    event in the room state has the property m.federate set to false, and the sender
    domain of the event does not match the sender domain of the create event, reject."
    Only the sender's domain counts. Applies when the sender is on the creator's
    server and the target is not; neutralised by a create event that federates.
    """
    if event.type != "m.room.member":
        return None
    create = next((e for e in auth if (e.type, e.state_key) == ("m.room.create", "")), None)
    if create is None or create.content.get("m.federate", True) is True:
        return None
    if _domain(event.sender) != _domain(create.sender):
        return None
    if _domain(event.state_key) == _domain(create.sender):
        return None
    pdu = create.get_pdu_json()
    pdu["content"] = {k: v for k, v in pdu["content"].items() if k != "m.federate"}
    federating = make_event_from_dict(pdu, create.room_version)
    return event, [federating if e is create else e for e in auth]


def _verifies(signed: dict[str, Any], server: str, key_id: str, public_keys: list[str]) -> bool:
    for public_key in public_keys:
        try:
            verify_key = decode_verify_key_bytes(key_id, decode_base64(public_key))
            signature = signed["signatures"][server][key_id]
            single = {**signed, "signatures": {server: {key_id: signature}}}
            verify_signed_json(single, server, verify_key)
            return True
        except (SignatureVerifyException, ValueError, KeyError, TypeError):
            continue
    return False


def third_party_invite_first_signature(
    event: EventBase, auth: list[EventBase]
) -> tuple[EventBase, list[EventBase]] | None:
    """Synapse gives up on a public key after the first Ed25519 signature it tries.

    Spec (auth rules, m.room.member invite with third_party_invite): "If any signature
    in signed matches any public key in the m.room.third_party_invite event, allow."
    Synapse's ``_verify_third_party_invite`` moves on to the next *public key* as soon
    as one signature fails, so a bad signature listed before a good one loses the
    invite. Applies when some but not all signatures verify; neutralised by keeping
    only the signatures that verify.
    """
    if event.type != "m.room.member" or event.membership != "invite":
        return None
    tpi = event.content.get("third_party_invite")
    signed = tpi.get("signed") if isinstance(tpi, Mapping) else None
    if not isinstance(signed, Mapping) or not isinstance(signed.get("signatures"), Mapping):
        return None
    signed = copy.deepcopy(dict(signed))
    token = signed.get("token")
    invite = next(
        (e for e in auth if e.type == "m.room.third_party_invite" and e.state_key == token),
        None,
    )
    if invite is None:
        return None
    public_keys = [invite.content["public_key"]] if "public_key" in invite.content else []
    public_keys += [
        k["public_key"] for k in invite.content.get("public_keys", []) if isinstance(k, Mapping)
    ]
    good: dict[str, dict[str, str]] = {}
    for server, block in signed["signatures"].items():
        for key_id in block:
            if key_id.startswith("ed25519:") and _verifies(signed, server, key_id, public_keys):
                good.setdefault(server, {})[key_id] = block[key_id]
    if not good or good == signed["signatures"]:
        return None
    pdu = copy.deepcopy(event.get_pdu_json())
    pdu["content"]["third_party_invite"]["signed"]["signatures"] = good
    return make_event_from_dict(pdu, event.room_version), auth


def member_state_key_not_user_id(
    event: EventBase, auth: list[EventBase]
) -> tuple[EventBase, list[EventBase]] | None:
    """Synapse rejects a membership event whose ``state_key`` is not a user ID.

    The auth rules never ask for the target to be a valid user ID; Synapse parses it
    (``get_domain_from_id`` for its m.federate check) and fails with "Invalid ID".
    Applies when the state_key has no ``:`` server part; neutralised by a valid user
    ID on the creator's server that has no membership and no power level entry.
    """
    if event.type != "m.room.member":
        return None
    state_key = event.state_key
    if ":" in state_key and state_key.startswith("@"):
        return None
    create = next((e for e in auth if (e.type, e.state_key) == ("m.room.create", "")), None)
    if create is None:
        return None
    pdu = copy.deepcopy(event.get_pdu_json())
    pdu["state_key"] = f"@ghost:{_domain(create.sender)}"
    replaced = [e for e in auth if (e.type, e.state_key) != ("m.room.member", state_key)]
    return make_event_from_dict(pdu, event.room_version), replaced


def power_levels_non_object_maps(
    event: EventBase, auth: list[EventBase]
) -> tuple[EventBase, list[EventBase]] | None:
    """Synapse crashes on power levels whose ``users``/``events``/``notifications``
    is not an object.

    Before v10 the rules only validate ``users`` (rooms/v1.md: "If the users property
    in content is not an object with keys that are valid user IDs with values that
    are integers (or a string that is an integer), reject."), so the first power
    levels event of a room can carry ``"events": null``; v10+ rejects it ("If either
    of the properties events or notifications in content are present and not an
    object..."). Synapse then raises ``AttributeError`` for every later event it
    authorises against it (``.get`` on None), which rejects them all; the spec
    treats the property as absent. Applies when the power levels among the auth events
    has such a value; neutralised by dropping those properties.
    """
    pl = next((e for e in auth if (e.type, e.state_key) == ("m.room.power_levels", "")), None)
    if pl is None:
        return None
    odd = [
        k
        for k in ("users", "events", "notifications")
        if k in pl.content and not isinstance(pl.content[k], Mapping)
    ]
    if not odd:
        return None
    pdu = copy.deepcopy(pl.get_pdu_json())
    for key in odd:
        del pdu["content"][key]
    fixed = make_event_from_dict(pdu, pl.room_version)
    return event, [fixed if e is pl else e for e in auth]


AUTH_DEVIATIONS: dict[str, Neutraliser] = {
    "power_levels_non_object_maps": power_levels_non_object_maps,
    "federate_target_domain": federate_target_domain,
    "third_party_invite_first_signature": third_party_invite_first_signature,
    "member_state_key_not_user_id": member_state_key_not_user_id,
}


def authoriser_signature_beyond_joins(
    synapse_event: EventBase,
    hearth_event: Event,
    hearth_events: hearth_side.HearthEvents,
) -> bool:
    """Synapse checks the authorising server's signature on joins only.

    Spec (rooms/v8.md ... v12.md, auth rules for m.room.member): "If content has a
    join_authorised_via_users_server key: If the event is not validly signed by the
    homeserver of the user ID denoted by the key, reject." - whatever the membership.
    Synapse (``validate_event_for_room_version``) asks for that signature only when
    the membership is ``join``. Recognised when Hearth, asked again without the key,
    allows the event as Synapse does.
    """
    if synapse_event.type != "m.room.member" or synapse_event.membership == "join":
        return False
    if not synapse_event.room_version.restricted_join_rule:
        return False
    content = hearth_event.content
    if "join_authorised_via_users_server" not in content:
        return False
    authoriser = content["join_authorised_via_users_server"]
    if isinstance(authoriser, str) and _domain(authoriser) in hearth_event.signatures:
        return False
    pdu = copy.deepcopy(hearth_event.pdu)
    del pdu["content"]["join_authorised_via_users_server"]
    without = make_event(pdu, hearth_event.room_version)
    return hearth_side.check_auth(without, hearth_events)[0]


_ASCII_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")


def _python_only_integer(value: Any) -> bool:
    """A string Python's ``int()`` takes but the spec's integer format does not."""
    if not isinstance(value, str) or _ASCII_INTEGER.fullmatch(value):
        return False
    try:
        int(value)
    except ValueError:
        return False
    return True


def _normalise_levels(content: dict[str, Any]) -> bool:
    """Rewrite Python-only integer strings in power levels content as plain integers."""
    changed = False
    for key, value in list(content.items()):
        if _python_only_integer(value):
            content[key] = int(value)
            changed = True
        elif key in ("users", "events", "notifications") and isinstance(value, dict):
            changed = _normalise_levels(value) or changed
    return changed


def stringy_levels_python_int(
    synapse_event: EventBase,
    hearth_event: Event,
    hearth_events: hearth_side.HearthEvents,
) -> bool:
    """Synapse reads stringy power levels with Python's ``int()``.

    Spec (v1-v9, "m.room.power_levels events accept values as strings"): "a single base
    10 integer, no float values or decimal points, optionally with any number of
    leading zeroes ... optionally prefixed with a single - or + ... optionally with any
    number of leading or trailing whitespace characters". ``int()`` also takes other
    Unicode decimal digits ("\u0665") and underscores ("1_0"). Recognised when the
    event's own power levels content has such a value and Hearth, asked again with
    those values written as integers, allows the event as Synapse does.
    """
    if hearth_event.type != "m.room.power_levels":
        return False
    pdu = copy.deepcopy(hearth_event.pdu)
    if not isinstance(pdu.get("content"), dict) or not _normalise_levels(pdu["content"]):
        return False
    normalised = make_event(pdu, hearth_event.room_version)
    return hearth_side.check_auth(normalised, hearth_events)[0]


def classify_auth_difference(
    synapse_event: EventBase,
    hearth_event: Event,
    hearth_ok: bool,
    events: oracle.EventMap,
    hearth_events: hearth_side.HearthEvents,
) -> str | None:
    """The documented deviation(s) explaining this difference, or None.

    Where Synapse is the stricter: tries each deviation's neutraliser, then
    combinations of them, and asks Synapse's state-dependent rules again; the first
    combination after which Synapse agrees with Hearth names the difference. Where
    Hearth is the stricter: the predicates that re-ask Hearth.
    """
    if not hearth_ok:
        if authoriser_signature_beyond_joins(synapse_event, hearth_event, hearth_events):
            return "authoriser_signature_beyond_joins"
        if stringy_levels_python_int(synapse_event, hearth_event, hearth_events):
            return "stringy_levels_python_int"
        return None
    auth = _auth_events(synapse_event, events)
    names = list(AUTH_DEVIATIONS)
    for size in range(1, len(names) + 1):
        for combo in itertools.combinations(names, size):
            event, inputs = synapse_event, auth
            for name in combo:
                neutralised = AUTH_DEVIATIONS[name](event, inputs)
                if neutralised is None:
                    break
                event, inputs = neutralised
            else:
                if _recheck(event, inputs) == hearth_ok:
                    return "+".join(combo)
    return None
