"""This server's signing keys and the signed key document other servers fetch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signedjson.key import (
    decode_verify_key_bytes,
    encode_verify_key_base64,
    get_verify_key,
    read_signing_keys,
)
from signedjson.sign import sign_json
from signedjson.types import SigningKey
from unpaddedbase64 import decode_base64

from homeserver.config.model import OldSigningKey


class SigningKeyError(Exception):
    pass


def load_signing_keys(path: Path) -> list[SigningKey]:
    """Read a Synapse-format key file: one ``ed25519 <version> <base64 seed>`` per line."""
    try:
        with open(path, encoding="ascii") as f:
            keys = read_signing_keys(f)
    except FileNotFoundError:
        raise SigningKeyError(
            f"config key 'signing_key_path' has value '{path}': expected an existing key file "
            "(hearth generate-config writes one)"
        ) from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise SigningKeyError(
            f"config key 'signing_key_path' has value '{path}': expected lines of "
            f"'ed25519 <key_version> <unpadded base64 seed>' ({e})"
        ) from None
    if not keys:
        raise SigningKeyError(
            f"config key 'signing_key_path' has value '{path}': the file holds no key"
        )
    return list(keys)


def key_id(key: SigningKey) -> str:
    return f"{key.alg}:{key.version}"


@dataclass
class ServerKeys:
    server_name: str
    signing_keys: list[SigningKey]
    old_signing_keys: Mapping[str, OldSigningKey]
    key_refresh_interval_ms: int

    def __post_init__(self) -> None:
        for old_id, old in self.old_signing_keys.items():
            algorithm, _, version = old_id.partition(":")
            try:
                decode_verify_key_bytes(old_id, decode_base64(old.key))
            except Exception:
                raise SigningKeyError(
                    f"config key 'old_signing_keys.{old_id}' has value {old.key!r}: expected "
                    "an ed25519 public key in unpadded base64"
                ) from None
            if algorithm != "ed25519" or not version:
                raise SigningKeyError(
                    f"config key 'old_signing_keys' has key ID {old_id!r}: "
                    "expected 'ed25519:<version>'"
                )

    @property
    def signing_key(self) -> SigningKey:
        """The key this server signs with."""
        return self.signing_keys[0]

    def key_document(self, now_ms: int) -> dict[str, Any]:
        """The body of ``GET /_matrix/key/v2/server``, signed by every current key."""
        document: dict[str, Any] = {
            "server_name": self.server_name,
            "valid_until_ts": now_ms + self.key_refresh_interval_ms,
            "verify_keys": {
                key_id(key): {"key": encode_verify_key_base64(get_verify_key(key))}
                for key in self.signing_keys
            },
            "old_verify_keys": {
                old_id: {"key": old.key, "expired_ts": old.expired_ts}
                for old_id, old in self.old_signing_keys.items()
            },
        }
        for key in self.signing_keys:
            document = sign_json(document, self.server_name, key)
        return document
