"""Stream positions and the tokens clients hold them in.

Clients treat every token as opaque; the formats are Synapse's, so a token means the
same thing to a client whichever of the two servers minted it:

- a room stream position ``s<stream_ordering>``: "after every event this server has
  persisted up to that ordering" (what /sync hands out);
- a topological position ``t<depth>-<stream_ordering>``: "after the event at
  (depth, stream_ordering)" in the room's DAG order (what /messages and /context hand
  out, since history must be walked in DAG order, not arrival order).

``StreamToken`` is the multi-stream token (the /sync ``since``/``next_batch``). Its first
``_``-separated part is the room position; each further stream (typing, receipts,
account data...) appends one integer part, in the order of ``StreamToken.EXTRA_STREAMS``.
Parts missing from an older token read as 0, so adding a stream never invalidates the
tokens clients already hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from homeserver.errors import invalid_param

_STREAM_RE = re.compile(r"^s(-?\d{1,19})$")
_TOPOLOGICAL_RE = re.compile(r"^t(-?\d{1,19})-(-?\d{1,19})$")
_INT_RE = re.compile(r"^\d{1,19}$")


class TokenError(ValueError):
    """A token that is not one of ours."""


@dataclass(frozen=True, order=True)
class RoomStreamToken:
    """A position in the room event stream, optionally pinned to the DAG's order.

    With ``topological`` set, the position is just after the event at
    (``topological``, ``stream``) ordered by (depth, stream_ordering); without it, just
    after stream ordering ``stream`` in arrival order.
    """

    topological: int | None
    stream: int

    @classmethod
    def parse(cls, text: str) -> RoomStreamToken:
        match = _TOPOLOGICAL_RE.match(text)
        if match is not None:
            return cls(int(match[1]), int(match[2]))
        match = _STREAM_RE.match(text)
        if match is not None:
            return cls(None, int(match[1]))
        raise TokenError(f"not a room stream token: {text!r}")

    def to_string(self) -> str:
        if self.topological is not None:
            return f"t{self.topological}-{self.stream}"
        return f"s{self.stream}"

    @property
    def position(self) -> tuple[int, int]:
        """The (depth, stream_ordering) this token sits after; topological tokens only."""
        assert self.topological is not None, "a stream-only token has no DAG position"
        return (self.topological, self.stream)

    def __str__(self) -> str:
        return self.to_string()


@dataclass(frozen=True)
class StreamToken:
    """A position in every stream /sync follows."""

    # The streams after the room stream, in token order. Append, never reorder. Each is
    # written by its own module, which calls Notifier.notify(<name>, position, ...).
    EXTRA_STREAMS: ClassVar[tuple[str, ...]] = (
        "typing",
        "receipts",
        "account_data",
        "presence",
        "to_device",
        "device_lists",
        "push_rules",
    )

    room_key: RoomStreamToken
    # Positions of EXTRA_STREAMS, by name.
    extra: tuple[tuple[str, int], ...] = ()

    @classmethod
    def parse(cls, text: str) -> StreamToken:
        parts = text.split("_")
        room_key = RoomStreamToken.parse(parts[0])
        names = cls.EXTRA_STREAMS
        if len(parts) - 1 > len(names):
            raise TokenError(f"too many parts in stream token {text!r}")
        values = []
        for part in parts[1:]:
            if not _INT_RE.match(part):
                raise TokenError(f"bad stream position {part!r} in token {text!r}")
            values.append(int(part))
        values.extend([0] * (len(names) - len(values)))
        return cls(room_key, tuple(zip(names, values, strict=True)))

    def to_string(self) -> str:
        return "_".join([self.room_key.to_string(), *(str(v) for _, v in self.extra)])

    def __str__(self) -> str:
        return self.to_string()


def parse_room_token(text: str, param: str) -> RoomStreamToken:
    """The room position of a client-supplied token (a room token or a whole
    ``StreamToken`` such as /sync's ``prev_batch``); 400 M_INVALID_PARAM if malformed."""
    try:
        return StreamToken.parse(text).room_key
    except TokenError:
        raise invalid_param(f"Invalid token in {param!r}: {text!r}") from None
