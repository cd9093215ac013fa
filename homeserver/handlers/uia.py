"""User-interactive authentication (the spec's "User-Interactive Authentication API").

A client calls an endpoint; if it has not completed one of the endpoint's flows yet it gets
401 with ``flows``, ``params``, ``session`` and ``completed`` (plus ``errcode``/``error``
when the stage it just tried failed), and repeats the call with an ``auth`` dict per stage.

Sessions live in memory (bounded, expiring): they last minutes, and a restart only makes a
client start its flow again. The registration tokens that sessions have validated but not
used yet (Synapse's ``pending``) are counted from these sessions.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from homeserver.errors import MatrixError, bad_json, limit_exceeded
from homeserver.passwords import PasswordHasher
from homeserver.ratelimit import Ratelimiter
from storage.accounts import AccountStore
from storage.registration_tokens import RegistrationToken, RegistrationTokenStore

LOGIN_DUMMY = "m.login.dummy"
LOGIN_PASSWORD = "m.login.password"
LOGIN_REGISTRATION_TOKEN = "m.login.registration_token"

SESSION_LIFETIME_MS = 2 * 24 * 3600 * 1000  # as Synapse
MAX_SESSIONS = 10_000


class UiaRequired(MatrixError):
    """401: the client has more stages to complete (its body is the UIA response)."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(401, body.get("errcode", ""), body.get("error", ""))
        self.body = body

    def to_json(self) -> dict[str, Any]:
        return self.body


@dataclass
class UiaSession:
    session_id: str
    method: str
    uri: str
    created_ms: int
    clientdict: dict[str, Any]
    completed: dict[str, Any] = field(default_factory=dict)
    # the registration token this session validated (counted as pending until it ends)
    registration_token: str | None = None


@dataclass(frozen=True)
class UiaResult:
    session_id: str
    completed: dict[str, Any]  # stage type -> its result (the user ID, the token...)
    # the request body, or the one stored with the session if this request sent none
    clientdict: dict[str, Any]


class _StageFailed(Exception):
    def __init__(self, errcode: str, error: str) -> None:
        self.errcode = errcode
        self.error = error


def is_token_usable(token: RegistrationToken, pending: int, now_ms: int) -> bool:
    if token.expiry_time is not None and token.expiry_time <= now_ms:
        return False
    return token.uses_allowed is None or token.completed + pending < token.uses_allowed


class UserInteractiveAuth:
    def __init__(
        self,
        *,
        server_name: str,
        accounts: AccountStore,
        registration_tokens: RegistrationTokenStore,
        passwords: PasswordHasher,
        failed_attempts: Ratelimiter,
        password_enabled: bool,
        now_ms: Callable[[], int],
    ) -> None:
        self._server_name = server_name
        self._accounts = accounts
        self._registration_tokens = registration_tokens
        self._passwords = passwords
        self._failed_attempts = failed_attempts
        self.password_enabled = password_enabled
        self._now_ms = now_ms
        self._sessions: dict[str, UiaSession] = {}  # in creation order
        self._pending_tokens: Counter[str] = Counter()

    def pending_uses(self, token: str) -> int:
        return self._pending_tokens[token]

    async def authenticate(
        self,
        body: dict[str, Any],
        *,
        method: str,
        uri: str,
        flows: Sequence[Sequence[str]],
        user_id: str | None = None,
    ) -> UiaResult:
        """Check the request's ``auth``; returns once a whole flow is complete.

        ``user_id`` is the authenticated user whose password ``m.login.password`` must
        match (None when registering). Raises ``UiaRequired`` (401) otherwise.
        """
        auth = body.get("auth")
        if auth is not None and not isinstance(auth, dict):
            raise bad_json("'auth' must be an object")
        clientdict = {k: v for k, v in body.items() if k != "auth"}
        session_id = auth.get("session") if auth else None
        if session_id is not None and not isinstance(session_id, str):
            raise bad_json("'auth.session' must be a string")
        if session_id is None:
            session = self._new_session(method, uri, clientdict)
        else:
            found = self._get_session(session_id)
            if found is None:
                raise MatrixError(400, "M_UNKNOWN", f"Unknown session ID: {session_id}")
            session = found
            if (session.method, session.uri) != (method, uri):
                raise MatrixError(
                    403,
                    "M_FORBIDDEN",
                    "Requested operation has changed during the UI authentication session.",
                )
            if clientdict:
                session.clientdict = clientdict
            else:
                clientdict = session.clientdict

        failure: _StageFailed | None = None
        stage = auth.get("type") if auth else None
        if auth and stage is not None:
            try:
                if not any(stage in flow for flow in flows):
                    raise _StageFailed("M_UNRECOGNIZED", f"Unrecognized login type {stage!r}")
                session.completed[stage] = await self._check_stage(stage, auth, session, user_id)
            except _StageFailed as e:
                failure = e

        for flow in flows:
            if all(s in session.completed for s in flow):
                return UiaResult(session.session_id, dict(session.completed), dict(clientdict))
        response: dict[str, Any] = {
            "flows": [{"stages": list(flow)} for flow in flows],
            "params": {},
            "session": session.session_id,
        }
        if session.completed:
            response["completed"] = list(session.completed)
        if failure is not None:
            response["errcode"] = failure.errcode
            response["error"] = failure.error
        raise UiaRequired(response)

    def finish(self, session_id: str) -> None:
        """The operation is done: forget the session (it cannot be replayed)."""
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self._release(session)

    # --- stages ---------------------------------------------------------------------------

    async def _check_stage(
        self, stage: str, auth: dict[str, Any], session: UiaSession, user_id: str | None
    ) -> Any:
        if stage == LOGIN_DUMMY:
            return True
        if stage == LOGIN_PASSWORD:
            return await self._check_password(auth, user_id)
        if stage == LOGIN_REGISTRATION_TOKEN:
            return await self._check_registration_token(auth, session)
        raise _StageFailed("M_UNRECOGNIZED", f"Unrecognized login type {stage!r}")

    async def _check_password(self, auth: dict[str, Any], user_id: str | None) -> str:
        if not self.password_enabled or user_id is None:
            raise _StageFailed("M_UNRECOGNIZED", "Password authentication is not available")
        password = auth.get("password")
        if not isinstance(password, str):
            raise _StageFailed("M_MISSING_PARAM", "Missing or invalid 'password'")
        named = identified_user(auth, self._server_name)
        if named is not None and named != user_id:
            raise _StageFailed("M_FORBIDDEN", "Requested user differs from the authenticated user")
        take_failure_slot(self._failed_attempts, user_id)
        user = await self._accounts.get_user(user_id)
        if user is None or not await self._passwords.check(password, user.password_hash):
            raise _StageFailed("M_FORBIDDEN", "Invalid password")
        give_back_failure_slot(self._failed_attempts, user_id)
        return user_id

    async def _check_registration_token(self, auth: dict[str, Any], session: UiaSession) -> str:
        token = auth.get("token")
        if not isinstance(token, str):
            raise _StageFailed("M_MISSING_PARAM", "Missing or invalid 'token'")
        if session.registration_token == token:
            return token  # validated earlier in this session, and still counted as pending
        stored = await self._registration_tokens.get(token)
        if stored is None or not is_token_usable(stored, self.pending_uses(token), self._now_ms()):
            raise _StageFailed("M_FORBIDDEN", "Invalid registration token")
        if session.registration_token is not None:
            self._pending_tokens[session.registration_token] -= 1
        session.registration_token = token
        self._pending_tokens[token] += 1
        return token

    # --- sessions -------------------------------------------------------------------------

    def _new_session(self, method: str, uri: str, clientdict: dict[str, Any]) -> UiaSession:
        now = self._now_ms()
        self._expire(now)
        while len(self._sessions) >= MAX_SESSIONS:
            oldest = next(iter(self._sessions))
            self.finish(oldest)
        session = UiaSession(secrets.token_urlsafe(18), method, uri, now, clientdict)
        self._sessions[session.session_id] = session
        return session

    def _get_session(self, session_id: str) -> UiaSession | None:
        self._expire(self._now_ms())
        return self._sessions.get(session_id)

    def _expire(self, now: int) -> None:
        for session_id, session in list(self._sessions.items()):
            if session.created_ms + SESSION_LIFETIME_MS > now:
                break  # sessions are in creation order
            self.finish(session_id)

    def _release(self, session: UiaSession) -> None:
        token = session.registration_token
        if token is not None:
            self._pending_tokens[token] -= 1
            if self._pending_tokens[token] <= 0:
                del self._pending_tokens[token]


def take_failure_slot(limiter: Ratelimiter, key: str) -> None:
    """Before checking a password: count it as a failure, or 429 if failures used up the bucket.

    Counting first and giving the slot back on success (``give_back_failure_slot``) makes
    the limiter count failed attempts only, with no window between check and count.
    """
    retry_after_ms = limiter.attempt(key)
    if retry_after_ms is not None:
        raise limit_exceeded(retry_after_ms)


def give_back_failure_slot(limiter: Ratelimiter, key: str) -> None:
    limiter.attempt(key, cost=-1.0)


def identified_user(submission: dict[str, Any], server_name: str) -> str | None:
    """The user ID a login or UIA submission names (``identifier`` or legacy ``user``).

    None when it names none; raises 400 for a malformed identifier.
    """
    identifier = submission.get("identifier")
    if identifier is not None:
        if not isinstance(identifier, dict):
            raise bad_json("'identifier' must be an object")
        kind = identifier.get("type")
        if kind != "m.id.user":
            raise MatrixError(400, "M_UNKNOWN", f"Unknown login identifier type {kind!r}")
        user = identifier.get("user")
        if user is None:
            raise MatrixError(400, "M_MISSING_PARAM", "User identifier is missing 'user' key")
    else:
        user = submission.get("user")
        if user is None:
            return None
    if not isinstance(user, str) or not user:
        raise MatrixError(400, "M_INVALID_PARAM", "'user' must be a non-empty string")
    return user if user.startswith("@") else f"@{user}:{server_name}"
