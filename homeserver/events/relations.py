"""Event relationships (spec: "Forming relationships between events"): reading an event's
``m.relates_to``. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

THREAD = "m.thread"
REPLACE = "m.replace"
ANNOTATION = "m.annotation"
REFERENCE = "m.reference"


@dataclass(frozen=True, slots=True)
class Relation:
    rel_type: str
    parent_id: str
    # The annotation's ``key`` (m.annotation only).
    key: str | None = None


def relation_from_content(content: Any) -> Relation | None:
    """The relationship ``content`` declares, or None if it declares none or an invalid one.

    The spec: relationships which do not match the schema are ignored. Both ``rel_type``
    and ``event_id`` must be strings, and an m.annotation needs its string ``key``.
    """
    if not isinstance(content, dict):
        return None
    relates_to = content.get("m.relates_to")
    if not isinstance(relates_to, dict):
        return None
    rel_type = relates_to.get("rel_type")
    parent_id = relates_to.get("event_id")
    if not isinstance(rel_type, str) or not isinstance(parent_id, str):
        return None
    if rel_type == ANNOTATION:
        key = relates_to.get("key")
        if not isinstance(key, str):
            return None
        return Relation(rel_type, parent_id, key)
    return Relation(rel_type, parent_id)
