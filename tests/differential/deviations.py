"""Documented places where Synapse departs from the spec, as exact predicates.

Each predicate recognises one class of difference described, with the spec's words,
in ``docs/differential-testing.md``. It does so by removing the one input the
deviation is about and asking Synapse again: the difference is accepted only if
Synapse then agrees with Hearth. Anything else is a mismatch and fails the test.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from synapse.events import EventBase, make_event_from_dict
from unpaddedbase64 import decode_base64

from tests.differential import synapse_oracle as oracle


def _domain(identifier: str) -> str:
    return identifier.partition(":")[2]


def _auth_events(event: EventBase, events: oracle.EventMap) -> list[EventBase]:
    return [events[e] for e in event.auth_event_ids()]


def _recheck(event: EventBase, auth_events: list[EventBase]) -> bool:
    return oracle.check_against_state(event, auth_events)[0]


def federate_target_domain(
    event: EventBase, hearth_ok: bool, synapse_why: str, events: oracle.EventMap
) -> bool:
    """Synapse also applies ``m.federate: false`` to the *target* of a membership event.

    Spec (rooms/v1.md ... v12.md, auth rules): "If the content of the m.room.create
    event in the room state has the property m.federate set to false, and the sender
    domain of the event does not match the sender domain of the create event, reject."
    Only the sender's domain counts. The difference is accepted when the sender is on
    the creator's server and Synapse, asked again with a create event that federates,
    agrees with Hearth.
    """
    if event.type != "m.room.member" or "unfederatable" not in synapse_why:
        return False
    auth = _auth_events(event, events)
    create = next((e for e in auth if (e.type, e.state_key) == ("m.room.create", "")), None)
    if create is None or create.content.get("m.federate", True) is True:
        return False
    if _domain(event.sender) != _domain(create.sender):
        return False
    if _domain(event.state_key) == _domain(create.sender):
        return False
    pdu = create.get_pdu_json()
    pdu["content"] = {k: v for k, v in pdu["content"].items() if k != "m.federate"}
    federating = make_event_from_dict(pdu, create.room_version)
    swapped = [federating if e is create else e for e in auth]
    return _recheck(event, swapped) == hearth_ok


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
    event: EventBase, hearth_ok: bool, synapse_why: str, events: oracle.EventMap
) -> bool:
    """Synapse gives up on a public key after the first Ed25519 signature it tries.

    Spec (auth rules, m.room.member invite with third_party_invite): "If any signature
    in signed matches any public key in the m.room.third_party_invite event, allow."
    Synapse's ``_verify_third_party_invite`` moves on to the next *public key* as soon
    as one signature fails, so a bad signature listed before a good one loses the
    invite. The difference is accepted when Synapse, asked again with only the
    signatures that verify, agrees with Hearth.
    """
    if event.type != "m.room.member" or event.membership != "invite":
        return False
    tpi = event.content.get("third_party_invite")
    signed = tpi.get("signed") if isinstance(tpi, dict) else None
    if not isinstance(signed, dict) or not isinstance(signed.get("signatures"), dict):
        return False
    auth = _auth_events(event, events)
    invite = next(
        (
            e
            for e in auth
            if e.type == "m.room.third_party_invite" and e.state_key == signed.get("token")
        ),
        None,
    )
    if invite is None:
        return False
    public_keys = [invite.content["public_key"]] if "public_key" in invite.content else []
    public_keys += [
        k["public_key"] for k in invite.content.get("public_keys", []) if isinstance(k, dict)
    ]
    good: dict[str, dict[str, str]] = {}
    for server, block in signed["signatures"].items():
        for key_id in block:
            if key_id.startswith("ed25519:") and _verifies(signed, server, key_id, public_keys):
                good.setdefault(server, {})[key_id] = block[key_id]
    if not good or good == signed["signatures"]:
        return False
    pdu = copy.deepcopy(event.get_pdu_json())
    pdu["content"]["third_party_invite"]["signed"]["signatures"] = good
    pruned = make_event_from_dict(pdu, event.room_version)
    return _recheck(pruned, auth) == hearth_ok


AUTH_DEVIATIONS: dict[str, Callable[[EventBase, bool, str, oracle.EventMap], bool]] = {
    "federate_target_domain": federate_target_domain,
    "third_party_invite_first_signature": third_party_invite_first_signature,
}


def classify_auth_difference(
    synapse_event: EventBase,
    hearth_ok: bool,
    synapse_why: str,
    events: oracle.EventMap,
) -> str | None:
    """The name of the documented deviation explaining this difference, or None."""
    for name, predicate in AUTH_DEVIATIONS.items():
        if predicate(synapse_event, hearth_ok, synapse_why, events):
            return name
    return None
