"""Signing PDUs and checking their signatures (server-server "Signing Events").

Key material comes in through a pure lookup so this module does no I/O: the keyring
fetches and caches server keys, and must already have capped each key's
``valid_until_ts`` at seven days into the future when it stored it (spec:
"Signing key validity period").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import nacl.exceptions
import nacl.signing
from signedjson.key import get_verify_key
from signedjson.sign import sign_json
from signedjson.types import SigningKey
from unpaddedbase64 import decode_base64

from homeserver.events.canonical_json import encode_canonical_json
from homeserver.events.errors import InvalidEventSignatureError
from homeserver.events.hashing import add_content_hash, check_content_hash
from homeserver.events.model import Event, JsonDict
from homeserver.events.redaction import prune_event, prune_event_dict
from homeserver.room_versions import EventFormat, RoomVersion

ED25519 = "ed25519"


@dataclass(frozen=True, slots=True)
class ServerVerifyKey:
    """A server's public key as the keyring knows it."""

    verify_key: nacl.signing.VerifyKey
    # Milliseconds since the epoch; already the lesser of the published value and
    # seven days after the key was fetched.
    valid_until_ts: int


KeyLookup: TypeAlias = Callable[[str, str], ServerVerifyKey | None]
"""``(server_name, key_id) -> key``, or None when the key is unknown."""

KeySource: TypeAlias = KeyLookup | Mapping[tuple[str, str], ServerVerifyKey]


def _as_lookup(keys: KeySource) -> KeyLookup:
    if isinstance(keys, Mapping):
        mapping = keys
        return lambda server_name, key_id: mapping.get((server_name, key_id))
    return keys


def server_name_of(identifier: str) -> str:
    """The server part of a ``@user:server`` / ``$id:server`` / ``!room:server`` ID."""
    _, sep, server_name = identifier.partition(":")
    if not sep or not server_name:
        raise InvalidEventSignatureError(f"{identifier!r} has no server name")
    return server_name


# --- signing ---------------------------------------------------------------------------


def sign_event(
    pdu: JsonDict, server_name: str, signing_key: SigningKey, room_version: RoomVersion
) -> None:
    """Add the content hash and ``server_name``'s signature to ``pdu``, in place.

    Signatures already on the PDU (e.g. the joining server's, when a resident server
    co-signs a restricted join) are kept.
    """
    add_content_hash(pdu)
    redacted = prune_event_dict(pdu, room_version)
    # Sign a dict without the existing signatures so signedjson builds a fresh
    # signatures object rather than writing into the one shared with ``pdu``.
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    signed = sign_json(redacted, server_name, signing_key)
    new_signatures: Mapping[str, str] = signed["signatures"][server_name]
    signatures = pdu.get("signatures")
    if not isinstance(signatures, dict):
        signatures = pdu["signatures"] = {}
    server_signatures = signatures.get(server_name)
    if isinstance(server_signatures, dict):
        server_signatures.update(new_signatures)
    else:
        signatures[server_name] = dict(new_signatures)


def verify_key_for(signing_key: SigningKey, valid_until_ts: int) -> ServerVerifyKey:
    """The ``ServerVerifyKey`` of one of our own signing keys."""
    return ServerVerifyKey(
        nacl.signing.VerifyKey(get_verify_key(signing_key).encode()), valid_until_ts
    )


# --- verifying -------------------------------------------------------------------------


def _is_third_party_invite(event: Event) -> bool:
    return (
        event.type == "m.room.member"
        and event.membership == "invite"
        and "third_party_invite" in event.content
    )


def required_signatures(event: Event) -> set[str]:
    """The servers whose signatures the event must carry (spec: "Validating hashes and
    signatures on received events").

    - The sender's server, except for invites made from a third-party invite: the
      sender must match the third-party invite's sender, but the event may come from a
      different server.
    - v1/v2: the server in the event ID, when it differs.
    - v8+ (restricted rooms): for a join naming ``join_authorised_via_users_server``,
      that user's server, which vouched for the join.

    The invited server's signature that ``/invite`` adds is not required: the spec asks
    only for the originating server's, so an invite is checked like any other event.
    """
    servers: set[str] = set()
    if not _is_third_party_invite(event):
        servers.add(server_name_of(event.sender))
    room_version = event.room_version
    if room_version.event_format is EventFormat.V1:
        servers.add(server_name_of(event.event_id))
    if room_version.restricted_join_rule and event.membership == "join":
        authoriser = event.content.get("join_authorised_via_users_server")
        if isinstance(authoriser, str):
            servers.add(server_name_of(authoriser))
    return servers


def _signed_bytes(event: Event) -> bytes:
    redacted = prune_event_dict(event.pdu, event.room_version)
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    return encode_canonical_json(redacted)


def verify_event_signatures(event: Event, keys: KeySource) -> None:
    """Raise ``InvalidEventSignatureError`` unless every required server signed ``event``.

    Per server, every signature made with a key we know (and that, in v5+, was valid at
    the event's ``origin_server_ts``) must verify, and there must be at least one.
    Signatures with unknown or expired keys are skipped, as the spec says.
    """
    lookup = _as_lookup(keys)
    signatures = event.signatures
    # Older versions accept keys whatever their expiry (spec: v5 signing requirements).
    minimum_valid_until = event.origin_server_ts if event.room_version.enforce_key_validity else 0
    message: bytes | None = None
    for server_name in sorted(required_signatures(event)):
        server_signatures = signatures.get(server_name)
        if not isinstance(server_signatures, dict):
            raise InvalidEventSignatureError(
                f"event {event.event_id} is not signed by {server_name}"
            )
        verified = False
        for key_id, signature_b64 in server_signatures.items():
            if not isinstance(key_id, str) or key_id.partition(":")[0] != ED25519:
                continue
            key = lookup(server_name, key_id)
            if key is None or key.valid_until_ts < minimum_valid_until:
                continue
            if message is None:
                message = _signed_bytes(event)
            if not _verify(key.verify_key, message, signature_b64):
                raise InvalidEventSignatureError(
                    f"signature {server_name} {key_id} on event {event.event_id} is invalid"
                )
            verified = True
        if not verified:
            raise InvalidEventSignatureError(
                f"event {event.event_id} has no signature from {server_name} with a known, "
                "unexpired key"
            )


def _verify(verify_key: nacl.signing.VerifyKey, message: bytes, signature_b64: Any) -> bool:
    if not isinstance(signature_b64, str):
        return False
    try:
        signature = decode_base64(signature_b64)
        verify_key.verify(message, signature)
    except (ValueError, nacl.exceptions.CryptoError):
        return False
    return True


def verify_event(event: Event, keys: KeySource) -> Event:
    """The checks a received PDU goes through before auth: signatures, then hashes.

    Raises ``InvalidEventSignatureError`` (drop the event). Returns ``event``, or its
    redacted copy if the content hash does not match, as the spec requires.
    """
    verify_event_signatures(event, keys)
    if check_content_hash(event.pdu):
        return event
    return prune_event(event)


# --- third-party invites ---------------------------------------------------------------


def decode_public_key(public_key_b64: str) -> nacl.signing.VerifyKey | None:
    """An Ed25519 key from unpadded base64 in either alphabet; None if malformed."""
    try:
        raw = decode_base64(public_key_b64)
        return nacl.signing.VerifyKey(raw)
    except (ValueError, TypeError, nacl.exceptions.CryptoError):
        return None


def verify_third_party_invite_signed(signed: Any, public_keys: str | Iterable[str]) -> bool:
    """Whether any signature in ``signed`` (``content.third_party_invite.signed``)
    verifies with any of ``public_keys`` (the ``m.room.third_party_invite`` event's
    ``public_key`` and ``public_keys[].public_key``, unpadded base64).

    The identity server's name in ``signatures`` is not trusted for anything, so every
    Ed25519 signature under every name is tried.
    """
    if not isinstance(signed, dict):
        return False
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        return False
    if isinstance(public_keys, str):
        public_keys = (public_keys,)
    verify_keys = [
        key
        for key in (decode_public_key(k) for k in public_keys if isinstance(k, str))
        if key is not None
    ]
    if not verify_keys:
        return False
    unsigned_copy = {k: v for k, v in signed.items() if k not in ("signatures", "unsigned")}
    message = encode_canonical_json(unsigned_copy)
    for server_signatures in signatures.values():
        if not isinstance(server_signatures, dict):
            continue
        for key_id, signature_b64 in server_signatures.items():
            if not isinstance(key_id, str) or key_id.partition(":")[0] != ED25519:
                continue
            for verify_key in verify_keys:
                if _verify(verify_key, message, signature_b64):
                    return True
    return False
