"""Errors raised by the pure event layer.

They carry no HTTP status: the REST and federation layers map them to Matrix errors
(``M_BAD_JSON``, ``M_TOO_LARGE``, ``M_FORBIDDEN``...) because the right answer depends on
who sent the event (a local client gets a 400, a remote server's PDU is dropped).
"""

from __future__ import annotations


class EventValidationError(ValueError):
    """The event (or JSON value) does not follow the format its room version requires."""


class EventSizeError(EventValidationError):
    """The event, or one of its size-limited keys, is too large.

    ``persist_as_rejected`` is true when a limit is broken that older servers did not
    enforce (byte, rather than codepoint, limits before room v11): dropping such an event
    could split the room, so it should be stored as rejected instead.
    """

    def __init__(self, message: str, *, persist_as_rejected: bool = False) -> None:
        super().__init__(message)
        self.persist_as_rejected = persist_as_rejected


class InvalidEventSignatureError(EventValidationError):
    """A required signature on an event is missing, unverifiable or wrong."""
