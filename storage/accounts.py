"""Users, access tokens and refresh tokens.

Access tokens are looked up by the SHA-256 of the token (one indexed query) and cached in a
small bounded cache; every write that deletes or changes a token evicts it after commit.
Writes that span devices, profiles and registration tokens (registering, logging out
devices, deactivating) run as one transaction here, so nothing is ever half-written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from homeserver.util.caches import LruCache
from storage.devices import delete_devices_txn, device_ids_txn, ensure_device_txn
from storage.engine import Cursor, Database
from storage.profiles import clear_profile_txn, create_profile_txn
from storage.registration_tokens import consume_token_txn

TOKEN_CACHE_SIZE = 10_000


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class DevicesDeletedHook(Protocol):
    """What else goes when devices are deleted (their end-to-end keys and messages):
    written in the deleting transaction, at a position reserved before it."""

    def reserve(self) -> int: ...

    def deleted_txn(
        self, cursor: Cursor, user_id: str, device_ids: Sequence[str], position: int
    ) -> None: ...

    def release(self, position: int, user_id: str, deleted: bool) -> None: ...


@dataclass
class _Deletion:
    position: int = 0
    device_ids: list[str] = field(default_factory=list)


class UserInUse(Exception):
    """A user with that ID already exists."""


@dataclass(frozen=True)
class User:
    user_id: str
    password_hash: str | None
    creation_ts: int
    admin: bool
    is_guest: bool
    deactivated: bool
    user_type: str | None


@dataclass(frozen=True)
class TokenInfo:
    """What an access token grants; cached, so only facts the writers keep right."""

    token_id: int
    user_id: str
    device_id: str | None
    valid_until_ms: int | None
    refresh_token_id: int | None
    used: bool
    is_guest: bool


@dataclass(frozen=True)
class RefreshTokenInfo:
    token_id: int
    user_id: str
    device_id: str
    expiry_ts: int | None
    ultimate_session_expiry_ts: int | None
    next_token_id: int | None
    # Whether the token it was exchanged for has itself been used (its access token used,
    # or it was refreshed in turn): from then on this one is spent.
    successor_used: bool


@dataclass(frozen=True)
class NewAccessToken:
    token_id: int
    sha256: str
    valid_until_ms: int | None


@dataclass(frozen=True)
class NewRefreshToken:
    token_id: int
    sha256: str
    expiry_ts: int | None
    ultimate_session_expiry_ts: int | None


@dataclass(frozen=True)
class NewSession:
    """A login: the device it is on and its tokens."""

    device_id: str
    device_display_name: str | None
    access: NewAccessToken
    refresh: NewRefreshToken | None = None


@dataclass(frozen=True)
class NewUser:
    user_id: str
    password_hash: str | None
    displayname: str | None
    is_guest: bool = False
    admin: bool = False
    user_type: str | None = None
    # counted as used in the same transaction that creates the user
    registration_token: str | None = None


_USER_COLUMNS = "user_id, password_hash, creation_ts, admin, is_guest, deactivated, user_type"


def _user(row: tuple[object, ...]) -> User:
    user_id, password_hash, creation_ts, admin, is_guest, deactivated, user_type = row
    return User(
        str(user_id),
        password_hash if isinstance(password_hash, str) else None,
        int(creation_ts),  # type: ignore[call-overload]
        bool(admin),
        bool(is_guest),
        bool(deactivated),
        user_type if isinstance(user_type, str) else None,
    )


class AccountStore:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._tokens: LruCache[str, TokenInfo] = LruCache(TOKEN_CACHE_SIZE)
        self.devices_deleted: DevicesDeletedHook | None = None

    async def _run_deleting_devices(
        self, desc: str, user_id: str, func: Callable[[Cursor, _Deletion], Any]
    ) -> None:
        """Run a transaction that may delete devices, with the deletion hook around it."""
        hook = self.devices_deleted
        deletion = _Deletion(hook.reserve() if hook is not None else 0)

        def txn(cursor: Cursor) -> None:
            deletion.device_ids.clear()  # a retried transaction starts again
            func(cursor, deletion)

        try:
            await self._db.run_interaction(desc, txn)
        finally:
            if hook is not None:
                hook.release(deletion.position, user_id, bool(deletion.device_ids))

    # --- users ---------------------------------------------------------------------------

    async def get_user(self, user_id: str) -> User | None:
        rows = await self._db.execute(
            "get_user", f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = ?", user_id
        )
        return _user(rows[0]) if rows else None

    async def user_exists(self, user_id: str) -> bool:
        rows = await self._db.execute(
            "user_exists", "SELECT 1 FROM users WHERE user_id = ?", user_id
        )
        return bool(rows)

    async def set_admin(self, user_id: str, admin: bool) -> None:
        await self._db.execute(
            "set_user_admin", "UPDATE users SET admin = ? WHERE user_id = ?", admin, user_id
        )

    async def register(self, user: NewUser, session: NewSession | None, now_ms: int) -> None:
        """Create the user, their profile and optionally their first login, atomically.

        Raises ``UserInUse``, or ``RegistrationTokenUnusable`` if the user's registration
        token cannot be used (any more); nothing is written then.
        """

        def register_txn(cursor: Cursor) -> None:
            cursor.execute(
                "INSERT INTO users (user_id, password_hash, creation_ts, admin, is_guest,"
                " user_type) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING",
                (
                    user.user_id,
                    user.password_hash,
                    now_ms,
                    user.admin,
                    user.is_guest,
                    user.user_type,
                ),
            )
            if cursor.rowcount == 0:
                raise UserInUse(user.user_id)
            if user.registration_token is not None:
                consume_token_txn(cursor, user.registration_token, now_ms)
            create_profile_txn(cursor, user.user_id, user.displayname)
            if session is not None:
                _create_session_txn(cursor, user.user_id, session, now_ms)

        await self._db.run_interaction("register_user", register_txn)

    async def set_password_hash(
        self,
        user_id: str,
        password_hash: str,
        *,
        keep_device_id: str | None,
        keep_token_id: int | None,
        logout_others: bool,
    ) -> None:
        """Change the password; with ``logout_others``, end every other session too."""

        def change(cursor: Cursor, deletion: _Deletion) -> None:
            cursor.execute(
                "UPDATE users SET password_hash = ? WHERE user_id = ?", (password_hash, user_id)
            )
            if logout_others:
                self._delete_sessions_txn(
                    cursor,
                    user_id,
                    deletion,
                    keep_device_id=keep_device_id,
                    keep_token_id=keep_token_id,
                )

        await self._run_deleting_devices("set_password_hash", user_id, change)

    async def deactivate(self, user_id: str, *, erase: bool) -> None:
        """Mark deactivated, forget the password, end every session; erase clears the profile."""

        def deactivate_txn(cursor: Cursor, deletion: _Deletion) -> None:
            cursor.execute(
                "UPDATE users SET deactivated = TRUE, password_hash = NULL WHERE user_id = ?",
                (user_id,),
            )
            self._delete_sessions_txn(
                cursor, user_id, deletion, keep_device_id=None, keep_token_id=None
            )
            if erase:
                clear_profile_txn(cursor, user_id)

        await self._run_deleting_devices("deactivate_user", user_id, deactivate_txn)

    # --- access tokens -------------------------------------------------------------------

    async def get_token(self, sha256: str) -> TokenInfo | None:
        cached = self._tokens.get(sha256)
        if cached is not None:
            return cached

        def lookup(cursor: Cursor) -> TokenInfo | None:
            cursor.execute(
                "SELECT t.id, t.user_id, t.device_id, t.valid_until_ms, t.refresh_token_id,"
                " t.used, u.is_guest, u.deactivated"
                " FROM access_tokens AS t JOIN users AS u ON u.user_id = t.user_id"
                " WHERE t.token_sha256 = ?",
                (sha256,),
            )
            row = cursor.fetchone()
            if row is None or row[7]:
                return None
            return TokenInfo(row[0], row[1], row[2], row[3], row[4], bool(row[5]), bool(row[6]))

        info = await self._db.run_interaction("get_access_token", lookup)
        if info is not None:
            self._tokens.set(sha256, info)
        return info

    async def mark_token_used(self, info: TokenInfo, sha256: str) -> TokenInfo:
        """Record the first use of a refreshable access token."""

        def mark(cursor: Cursor) -> None:
            cursor.execute("UPDATE access_tokens SET used = TRUE WHERE id = ?", (info.token_id,))

        await self._db.run_interaction("mark_access_token_used", mark)
        used = replace(info, used=True)
        if sha256 in self._tokens:
            self._tokens.set(sha256, used)
        return used

    async def create_session(self, user_id: str, session: NewSession, now_ms: int) -> None:
        """A login: the device (unless it exists) and its new tokens."""
        await self._db.run_interaction(
            "create_session", _create_session_txn, user_id, session, now_ms
        )

    async def delete_access_token(self, token_id: int) -> None:
        def delete(cursor: Cursor) -> None:
            self._delete_tokens_txn(cursor, "id = ?", (token_id,))

        await self._db.run_interaction("delete_access_token", delete)

    async def delete_devices(self, user_id: str, device_ids: Sequence[str]) -> None:
        """Delete devices and every access and refresh token issued on them."""

        def delete(cursor: Cursor, deletion: _Deletion) -> None:
            self._delete_devices_txn(cursor, user_id, device_ids, deletion)

        await self._run_deleting_devices("delete_devices", user_id, delete)

    async def delete_all_sessions(self, user_id: str) -> None:
        """Log out everywhere: every device and every token of the user."""

        def delete(cursor: Cursor, deletion: _Deletion) -> None:
            self._delete_sessions_txn(
                cursor, user_id, deletion, keep_device_id=None, keep_token_id=None
            )

        await self._run_deleting_devices("delete_all_sessions", user_id, delete)

    # --- refresh tokens ------------------------------------------------------------------

    async def get_refresh_token(self, sha256: str) -> RefreshTokenInfo | None:
        def lookup(cursor: Cursor) -> RefreshTokenInfo | None:
            cursor.execute(
                "SELECT r.id, r.user_id, r.device_id, r.expiry_ts,"
                " r.ultimate_session_expiry_ts, r.next_token_id,"
                " (SELECT COUNT(*) FROM access_tokens AS a"
                "   WHERE a.refresh_token_id = r.next_token_id AND a.used),"
                " n.next_token_id"
                " FROM refresh_tokens AS r LEFT JOIN refresh_tokens AS n ON n.id = r.next_token_id"
                " WHERE r.token_sha256 = ?",
                (sha256,),
            )
            row = cursor.fetchone()
            if row is None:
                return None
            return RefreshTokenInfo(
                token_id=row[0],
                user_id=row[1],
                device_id=row[2],
                expiry_ts=row[3],
                ultimate_session_expiry_ts=row[4],
                next_token_id=row[5],
                successor_used=bool(row[6]) or row[7] is not None,
            )

        return await self._db.run_interaction("get_refresh_token", lookup)

    async def rotate_refresh_token(
        self, old: RefreshTokenInfo, session: NewSession, now_ms: int
    ) -> None:
        """Exchange ``old`` for the session's new tokens.

        Only the newest two generations are kept: a successor ``old`` was exchanged for
        before (its response lost, say) is replaced, and ``old``'s own predecessor goes,
        with the access tokens issued alongside each.
        """

        def rotate(cursor: Cursor) -> None:
            stale = [old.next_token_id] if old.next_token_id is not None else []
            cursor.execute("SELECT id FROM refresh_tokens WHERE next_token_id = ?", (old.token_id,))
            stale += [row[0] for row in cursor.fetchall()]
            _create_session_txn(cursor, old.user_id, session, now_ms)
            assert session.refresh is not None
            cursor.execute(
                "UPDATE refresh_tokens SET next_token_id = ? WHERE id = ?",
                (session.refresh.token_id, old.token_id),
            )
            for token_id in stale:
                self._delete_tokens_txn(cursor, "refresh_token_id = ?", (token_id,))
                cursor.execute("DELETE FROM refresh_tokens WHERE id = ?", (token_id,))

        await self._db.run_interaction("rotate_refresh_token", rotate)

    # --- transaction pieces ----------------------------------------------------------------

    def _delete_tokens_txn(self, cursor: Cursor, where: str, args: tuple[object, ...]) -> None:
        cursor.execute(f"DELETE FROM access_tokens WHERE {where} RETURNING token_sha256", args)
        for (sha256,) in cursor.fetchall():
            cursor.call_after_commit(self._tokens.pop, sha256)

    def _delete_devices_txn(
        self, cursor: Cursor, user_id: str, device_ids: Sequence[str], deletion: _Deletion
    ) -> None:
        for device_id in device_ids:
            self._delete_tokens_txn(cursor, "user_id = ? AND device_id = ?", (user_id, device_id))
            cursor.execute(
                "DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?",
                (user_id, device_id),
            )
        delete_devices_txn(cursor, user_id, device_ids)
        if self.devices_deleted is not None and device_ids:
            self.devices_deleted.deleted_txn(cursor, user_id, device_ids, deletion.position)
            deletion.device_ids.extend(device_ids)

    def _delete_sessions_txn(
        self,
        cursor: Cursor,
        user_id: str,
        deletion: _Deletion,
        *,
        keep_device_id: str | None,
        keep_token_id: int | None,
    ) -> None:
        devices = [d for d in device_ids_txn(cursor, user_id) if d != keep_device_id]
        self._delete_devices_txn(cursor, user_id, devices, deletion)
        # Every other token, including ones without a device.
        self._delete_tokens_txn(cursor, "user_id = ? AND id <> ?", (user_id, keep_token_id or -1))


def _create_session_txn(cursor: Cursor, user_id: str, session: NewSession, now_ms: int) -> None:
    ensure_device_txn(cursor, user_id, session.device_id, session.device_display_name)
    refresh = session.refresh
    if refresh is not None:
        cursor.execute(
            "INSERT INTO refresh_tokens (id, token_sha256, user_id, device_id, expiry_ts,"
            " ultimate_session_expiry_ts) VALUES (?, ?, ?, ?, ?, ?)",
            (
                refresh.token_id,
                refresh.sha256,
                user_id,
                session.device_id,
                refresh.expiry_ts,
                refresh.ultimate_session_expiry_ts,
            ),
        )
    access = session.access
    cursor.execute(
        "INSERT INTO access_tokens (id, token_sha256, user_id, device_id, created_ts,"
        " valid_until_ms, refresh_token_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            access.token_id,
            access.sha256,
            user_id,
            session.device_id,
            now_ms,
            access.valid_until_ms,
            refresh.token_id if refresh is not None else None,
        ),
    )
