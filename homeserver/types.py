"""Small value types shared by handlers, the HTTP layer and storage."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The user ID localpart grammar of the spec (appendices, "User Identifiers"), for new users.
_LOCALPART_RE = re.compile(r"^[a-z0-9._=\-/+]+$")
# Historical localparts may use any printable ASCII except ':'.
_HISTORICAL_LOCALPART_RE = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")


@dataclass(frozen=True, slots=True)
class Requester:
    """Who is making a client request, as established from their access token."""

    user_id: str
    device_id: str | None
    access_token_id: int | None = None
    is_guest: bool = False
    # The application service acting, if the token is an application service's.
    app_service_id: str | None = None


@dataclass(frozen=True, slots=True)
class UserID:
    localpart: str
    domain: str

    @classmethod
    def parse(cls, user_id: str) -> UserID:
        """Parse ``@localpart:domain``; raises ValueError with the reason."""
        if not isinstance(user_id, str) or not user_id.startswith("@") or ":" not in user_id:
            raise ValueError(f"{user_id!r} is not a user ID (@localpart:domain)")
        localpart, domain = user_id[1:].split(":", 1)
        if not localpart or not domain:
            raise ValueError(f"{user_id!r} is not a user ID (@localpart:domain)")
        if len(user_id.encode("utf-8")) > 255:
            raise ValueError("user IDs are at most 255 bytes")
        if not _HISTORICAL_LOCALPART_RE.match(localpart):
            raise ValueError(f"{user_id!r} has characters not allowed in a user ID")
        return cls(localpart, domain)

    def to_string(self) -> str:
        return f"@{self.localpart}:{self.domain}"


def is_valid_new_localpart(localpart: str) -> bool:
    """Whether a newly registered user may take this localpart (the strict grammar)."""
    return bool(_LOCALPART_RE.match(localpart))


@dataclass(frozen=True, slots=True)
class RoomAlias:
    localpart: str
    domain: str

    @classmethod
    def parse(cls, alias: str) -> RoomAlias:
        if not isinstance(alias, str) or not alias.startswith("#") or ":" not in alias:
            raise ValueError(f"{alias!r} is not a room alias (#localpart:domain)")
        localpart, domain = alias[1:].split(":", 1)
        if not localpart or not domain or len(alias.encode("utf-8")) > 255:
            raise ValueError(f"{alias!r} is not a valid room alias")
        return cls(localpart, domain)

    def to_string(self) -> str:
        return f"#{self.localpart}:{self.domain}"
