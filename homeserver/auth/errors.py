"""The one error the authorisation rules raise."""

from __future__ import annotations


class AuthError(Exception):
    """An event is not authorised. ``reason`` names the rule that failed.

    Handlers answer a client with 403 ``M_FORBIDDEN``; federation marks a received
    event rejected (or soft-failed) with ``reason`` as its ``rejected_reason``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason
