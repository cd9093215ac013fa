"""Profiles: display name, avatar URL and the other profile fields (spec v1.16+).

A change of display name or avatar URL must reach the user's member event in every room
they are joined to; the rooms core does that through ``MembershipSync``.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.types import Requester, UserID
from storage.profiles import AVATAR_URL, DISPLAYNAME, ProfileStore, ProfileTooLarge

MAX_DISPLAYNAME_LENGTH = 256  # as Synapse
MAX_AVATAR_URL_LENGTH = 1000  # as Synapse
MAX_PROFILE_BYTES = 64 * 1024  # the spec's limit for the whole profile
MAX_KEY_BYTES = 255
_KEY_NAME = re.compile(r"^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$")


class MembershipSync(Protocol):
    """What the rooms core does when an account changes (implemented there)."""

    async def profile_changed(
        self, requester: Requester, displayname: str | None, avatar_url: str | None
    ) -> None:
        """Update the requester's m.room.member event in every room they are joined to.

        Called after the new values are stored; they are the whole new pair (None: unset).
        """

    async def user_deactivated(self, user_id: str) -> None:
        """Leave every room the (now deactivated) user is in, and reject their invites."""


class RemoteProfiles(Protocol):
    """Other servers' users' profiles (federation/queries.py)."""

    async def query_profile(
        self, user_id: str, server: str, field: str | None
    ) -> dict[str, Any]: ...


class NoRoomsYet:
    """A ``MembershipSync`` for a server without rooms: nothing to update."""

    async def profile_changed(
        self, requester: Requester, displayname: str | None, avatar_url: str | None
    ) -> None:
        return None

    async def user_deactivated(self, user_id: str) -> None:
        return None


class ProfileHandler:
    def __init__(
        self,
        *,
        server_name: str,
        profiles: ProfileStore,
        membership_sync: MembershipSync,
        enable_set_displayname: bool = True,
        enable_set_avatar_url: bool = True,
    ) -> None:
        self._server_name = server_name
        # Synapse's switches: fields users may not change themselves.
        self._locked = {
            key
            for key, enabled in (
                (DISPLAYNAME, enable_set_displayname),
                (AVATAR_URL, enable_set_avatar_url),
            )
            if not enabled
        }
        self._profiles = profiles
        self.membership_sync = membership_sync
        # Set when federation is wired; without it remote users' profiles are 404.
        self.remote: RemoteProfiles | None = None

    def _local_user(self, user_id: str) -> UserID:
        try:
            parsed = UserID.parse(user_id)
        except ValueError as e:
            raise MatrixError(400, "M_INVALID_PARAM", str(e)) from None
        return parsed

    async def get_profile(self, user_id: str) -> dict[str, Any]:
        parsed = self._local_user(user_id)
        if not self._is_local(parsed) and self.remote is not None:
            return await self.remote.query_profile(user_id, parsed.domain, None)
        profile = await self._profiles.get_profile(user_id) if self._is_local(parsed) else None
        if profile is None:
            raise not_found("Profile was not found")
        return profile

    async def get_field(self, user_id: str, key: str) -> dict[str, Any]:
        _check_key(key)
        parsed = self._local_user(user_id)
        if not self._is_local(parsed) and self.remote is not None:
            profile = await self.remote.query_profile(user_id, parsed.domain, key)
        else:
            profile = await self.get_profile(user_id)
        if key not in profile:
            raise not_found("The requested profile key does not exist.")
        return {key: profile[key]}

    async def set_field(
        self, requester: Requester, user_id: str, key: str, body: dict[str, Any]
    ) -> None:
        _check_key(key)
        self._check_may_change(requester, user_id, key)
        if key not in body:
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing key '{key}'")
        value = _checked_value(key, body[key])
        clears = value is None and key in (DISPLAYNAME, AVATAR_URL)
        await self._change(requester, user_id, key, value, delete=clears)

    async def delete_field(self, requester: Requester, user_id: str, key: str) -> None:
        _check_key(key)
        self._check_may_change(requester, user_id, key)
        await self._change(requester, user_id, key, None, delete=True)

    def _check_may_change(self, requester: Requester, user_id: str, key: str) -> None:
        self._local_user(user_id)
        if requester.user_id != user_id:
            raise forbidden("You may not change another user's profile")
        if key in self._locked:
            raise forbidden(f"Changing {key} is disabled on this server")
        if requester.is_guest and key != DISPLAYNAME:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests may only set a display name")

    async def _change(
        self, requester: Requester, user_id: str, key: str, value: Any, *, delete: bool
    ) -> None:
        try:
            before = await self._profiles.set_field(
                user_id, key, value, delete=delete, max_bytes=MAX_PROFILE_BYTES
            )
        except ProfileTooLarge:
            raise MatrixError(
                400, "M_PROFILE_TOO_LARGE", "The profile would exceed its 64 KiB limit"
            ) from None
        if before is None:
            raise not_found("Profile was not found")
        if key in (DISPLAYNAME, AVATAR_URL) and before.get(key) != value:
            after = dict(before)
            after[key] = value
            await self.membership_sync.profile_changed(
                requester, after.get(DISPLAYNAME), after.get(AVATAR_URL)
            )

    def _is_local(self, user_id: UserID) -> bool:
        return user_id.domain == self._server_name


def _check_key(key: str) -> None:
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise MatrixError(400, "M_KEY_TOO_LARGE", "Profile key is longer than 255 bytes")
    if not _KEY_NAME.match(key):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid profile key.")


def _checked_value(key: str, value: Any) -> Any:
    """The value to store: None (for displayname and avatar_url "" too) removes the field."""
    if key == DISPLAYNAME:
        if not isinstance(value, str):
            raise MatrixError(400, "M_INVALID_PARAM", "'displayname' must be a string")
        if len(value) > MAX_DISPLAYNAME_LENGTH:
            raise MatrixError(
                400, "M_INVALID_PARAM", f"Display name is too long (max {MAX_DISPLAYNAME_LENGTH})"
            )
        return value or None
    if key == AVATAR_URL:
        if not isinstance(value, str):
            raise MatrixError(400, "M_INVALID_PARAM", "'avatar_url' must be a string")
        if len(value) > MAX_AVATAR_URL_LENGTH:
            raise MatrixError(
                400, "M_INVALID_PARAM", f"Avatar URL is too long (max {MAX_AVATAR_URL_LENGTH})"
            )
        return value or None
    if key == "m.tz" and not isinstance(value, str):
        raise MatrixError(400, "M_INVALID_PARAM", "'m.tz' must be a string")
    return value
