"""Server ACLs (``m.room.server_acl``): which servers may take part in a room over
federation. Pure functions, no I/O.

The spec's order: no ACL event allows everyone; an IP-literal server name is denied when
``allow_ip_literals`` is ``false``; then ``deny`` wins, then ``allow``; anything else is
denied. Globs (``*``, ``?``) are matched case-insensitively against the whole host, the
port left out. Content that is not of the expected type is read as Synapse does: a
non-boolean ``allow_ip_literals`` counts as ``true``, a non-list ``allow``/``deny`` as
empty, and non-string entries are ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SERVER_ACL = "m.room.server_acl"


def glob_to_regex(glob: str) -> re.Pattern[str]:
    """The spec's glob: ``*`` is any run of characters (even none), ``?`` exactly one;
    everything else is literal. Matched against the whole string, ignoring case."""
    parts = []
    for char in glob:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def host_of(server_name: str) -> str:
    """The server name without its port: ``evil.com:8448`` -> ``evil.com``,
    ``[::1]:8448`` -> ``[::1]``."""
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name[: end + 1] if end != -1 else server_name
    host, sep, port = server_name.rpartition(":")
    return host if sep and port.isdigit() else server_name


def is_ip_literal(host: str) -> bool:
    if host.startswith("["):
        return True  # the only way a server name holds an IPv6 address
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _patterns(value: Any) -> tuple[re.Pattern[str], ...]:
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(glob_to_regex(entry) for entry in value if isinstance(entry, str))


@dataclass(frozen=True)
class ServerAcl:
    allow_ip_literals: bool
    allow: tuple[re.Pattern[str], ...]
    deny: tuple[re.Pattern[str], ...]

    @classmethod
    def from_content(cls, content: Mapping[str, Any]) -> ServerAcl:
        allow_ip_literals = content.get("allow_ip_literals", True)
        return cls(
            allow_ip_literals=allow_ip_literals if isinstance(allow_ip_literals, bool) else True,
            allow=_patterns(content.get("allow")),
            deny=_patterns(content.get("deny")),
        )

    def allows(self, server_name: str) -> bool:
        """Whether ``server_name`` (a port, if any, is ignored) may take part in the room."""
        host = host_of(server_name)
        if not self.allow_ip_literals and is_ip_literal(host):
            return False
        if any(p.fullmatch(host) for p in self.deny):
            return False
        return any(p.fullmatch(host) for p in self.allow)


def server_allowed(acl_content: Mapping[str, Any] | None, server_name: str) -> bool:
    """The spec's check for one server against a room's ACL event content (None: the
    room has no ACL event)."""
    if acl_content is None:
        return True
    return ServerAcl.from_content(acl_content).allows(server_name)

