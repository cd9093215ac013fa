"""Password hashing, in Synapse's bcrypt scheme so hashes move between the two servers.

The scheme: NFKC-normalise the password, encode it as UTF-8, append the optional pepper
(``password_config.pepper``), keep the first 72 bytes (all bcrypt ever reads, said
explicitly so newer bcrypt libraries that refuse longer input agree with older ones),
bcrypt with ``bcrypt_rounds``. The hash is stored as the ASCII ``$2b$...`` string.

bcrypt is slow on purpose; the async methods run it on a thread so the reactor is not held.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import bcrypt
from twisted.internet.threads import deferToThreadPool

# bcrypt reads at most this many bytes of its input.
BCRYPT_MAX_INPUT = 72


def _password_bytes(password: str, pepper: str) -> bytes:
    data = unicodedata.normalize("NFKC", password).encode("utf-8") + pepper.encode("utf-8")
    return data[:BCRYPT_MAX_INPUT]


def hash_password(password: str, *, rounds: int = 12, pepper: str = "") -> str:
    """The stored form of ``password`` (blocking: seconds at high ``rounds``)."""
    return bcrypt.hashpw(_password_bytes(password, pepper), bcrypt.gensalt(rounds)).decode("ascii")


def check_password(password: str, stored_hash: str | None, *, pepper: str = "") -> bool:
    """Whether ``password`` matches ``stored_hash`` (blocking). False for no or a bad hash."""
    if not stored_hash:
        return False
    try:
        return bcrypt.checkpw(_password_bytes(password, pepper), stored_hash.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return False  # not a bcrypt hash: no password can match it


class PasswordHasher:
    """Hashes and checks passwords off the reactor thread, with the server's settings."""

    def __init__(self, reactor: Any, *, rounds: int, pepper: str) -> None:
        self._reactor = reactor
        self.rounds = rounds
        self._pepper = pepper

    async def hash(self, password: str) -> str:
        result: str = await deferToThreadPool(
            self._reactor,
            self._reactor.getThreadPool(),
            hash_password,
            password,
            rounds=self.rounds,
            pepper=self._pepper,
        )
        return result

    async def check(self, password: str, stored_hash: str | None) -> bool:
        if not stored_hash:
            return False
        result: bool = await deferToThreadPool(
            self._reactor,
            self._reactor.getThreadPool(),
            check_password,
            password,
            stored_hash,
            pepper=self._pepper,
        )
        return result
