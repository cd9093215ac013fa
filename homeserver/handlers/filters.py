"""Client filters (spec: "Filtering"): validation, the parsed types, and their storage.

``Filter.from_json`` validates an uploaded filter (400 M_BAD_JSON naming the bad field)
and parses it; ``RoomEventFilter`` is what /messages, /context and /sync's timeline and
state apply to events. Unknown keys are accepted and kept, for forward compatibility,
as Synapse does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from homeserver.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.events.model import Event, JsonDict
from storage.filters import FilterStore
from storage.room_history import EventQuery

T = TypeVar("T")


def _check_object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise bad_json(f"{where} must be an object")
    return value


def _string_list(
    obj: Mapping[str, Any], key: str, where: str, check: Callable[[str], bool] | None = None
) -> list[str] | None:
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad_json(f"{where}.{key} must be an array of strings")
    if check is not None:
        for item in value:
            if not check(item):
                raise bad_json(f"{where}.{key} has an invalid entry {item!r}")
    return list(value)


def _bool(obj: Mapping[str, Any], key: str, where: str) -> bool | None:
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, bool):
        raise bad_json(f"{where}.{key} must be a boolean")
    return value


def _limit(obj: Mapping[str, Any], where: str) -> int | None:
    if "limit" not in obj:
        return None
    value = obj["limit"]
    if type(value) is not int or value < 0:
        raise bad_json(f"{where}.limit must be a non-negative integer")
    return value


def _filter_not_json() -> MatrixError:
    return MatrixError(400, "M_NOT_JSON", "The filter parameter is not valid JSON")


def _is_user_id(value: str) -> bool:
    return value.startswith("@") and ":" in value


def _is_room_id(value: str) -> bool:
    # v12 room IDs carry no server name, so only the sigil is required.
    return value.startswith("!") and len(value) > 1


def _matches_type(event_type: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern


@dataclass(frozen=True)
class EventFilter:
    """The spec's ``EventFilter``, for presence and account data (dicts with a type)."""

    limit: int | None = None
    types: Sequence[str] | None = None
    not_types: Sequence[str] = ()
    senders: Sequence[str] | None = None
    not_senders: Sequence[str] = ()

    @classmethod
    def from_json(cls, value: Any, where: str) -> EventFilter:
        obj = _check_object(value, where)
        return cls(
            limit=_limit(obj, where),
            types=_string_list(obj, "types", where),
            not_types=_string_list(obj, "not_types", where) or (),
            senders=_string_list(obj, "senders", where, _is_user_id),
            not_senders=_string_list(obj, "not_senders", where, _is_user_id) or (),
        )

    def allows_type(self, event_type: str) -> bool:
        if any(_matches_type(event_type, p) for p in self.not_types):
            return False
        return self.types is None or any(_matches_type(event_type, p) for p in self.types)

    def allows_sender(self, sender: str | None) -> bool:
        if sender is not None and sender in self.not_senders:
            return False
        return self.senders is None or (sender is not None and sender in self.senders)

    def matches_dict(self, item: Mapping[str, Any]) -> bool:
        """For presence and account data entries, which are dicts."""
        event_type = item.get("type")
        sender = item.get("sender")
        return self.allows_type(event_type if isinstance(event_type, str) else "") and (
            self.allows_sender(sender if isinstance(sender, str) else None)
        )

    def blocks_all(self) -> bool:
        return self.types == [] or "*" in self.not_types or self.senders == []


@dataclass(frozen=True)
class RoomEventFilter(EventFilter):
    """The spec's ``RoomEventFilter`` (also the ``filter`` parameter of /messages)."""

    rooms: Sequence[str] | None = None
    not_rooms: Sequence[str] = ()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False

    @classmethod
    def from_json(cls, value: Any, where: str = "filter") -> RoomEventFilter:
        obj = _check_object(value, where)
        base = EventFilter.from_json(obj, where)
        return cls(
            limit=base.limit,
            types=base.types,
            not_types=base.not_types,
            senders=base.senders,
            not_senders=base.not_senders,
            rooms=_string_list(obj, "rooms", where, _is_room_id),
            not_rooms=_string_list(obj, "not_rooms", where, _is_room_id) or (),
            contains_url=_bool(obj, "contains_url", where),
            lazy_load_members=bool(_bool(obj, "lazy_load_members", where)),
            include_redundant_members=bool(_bool(obj, "include_redundant_members", where)),
            unread_thread_notifications=bool(_bool(obj, "unread_thread_notifications", where)),
        )

    @classmethod
    def from_query_param(cls, text: str | None) -> RoomEventFilter | None:
        """The ``filter`` query parameter of /messages and /context (JSON); None if absent."""
        if text is None or text == "":
            return None
        try:
            value = json.loads(text)
        except ValueError:
            raise _filter_not_json() from None
        return cls.from_json(value)

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def matches(self, event: Event) -> bool:
        if not self.allows_room(event.room_id):
            return False
        if not self.allows_type(event.type) or not self.allows_sender(event.sender):
            return False
        if self.contains_url is not None:
            has_url = isinstance(event.content.get("url"), str)
            if has_url != self.contains_url:
                return False
        return True

    def filter(self, events: Iterable[Event]) -> list[Event]:
        return [event for event in events if self.matches(event)]

    def database_query(self) -> EventQuery:
        """The part of this filter the database can apply while paging."""
        return EventQuery(
            types=self.types,
            not_types=self.not_types,
            senders=self.senders,
            not_senders=self.not_senders,
        )

    def blocks_all(self) -> bool:
        return super().blocks_all() or self.rooms == [] or "*" in self.not_rooms


@dataclass(frozen=True)
class RoomFilter:
    rooms: Sequence[str] | None = None
    not_rooms: Sequence[str] = ()
    include_leave: bool = False
    timeline: RoomEventFilter = field(default_factory=RoomEventFilter)
    state: RoomEventFilter = field(default_factory=RoomEventFilter)
    ephemeral: RoomEventFilter = field(default_factory=RoomEventFilter)
    account_data: RoomEventFilter = field(default_factory=RoomEventFilter)

    @classmethod
    def from_json(cls, value: Any, where: str = "room") -> RoomFilter:
        obj = _check_object(value, where)

        def sub(key: str) -> RoomEventFilter:
            return (
                RoomEventFilter.from_json(obj[key], f"{where}.{key}")
                if key in obj
                else (RoomEventFilter())
            )

        return cls(
            rooms=_string_list(obj, "rooms", where, _is_room_id),
            not_rooms=_string_list(obj, "not_rooms", where, _is_room_id) or (),
            include_leave=bool(_bool(obj, "include_leave", where)),
            timeline=sub("timeline"),
            state=sub("state"),
            ephemeral=sub("ephemeral"),
            account_data=sub("account_data"),
        )

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms


@dataclass(frozen=True)
class Filter:
    """The spec's ``Filter`` (POST /user/{userId}/filter, /sync's ``filter``)."""

    event_fields: Sequence[str] | None = None
    event_format: str = "client"
    presence: EventFilter = field(default_factory=EventFilter)
    account_data: EventFilter = field(default_factory=EventFilter)
    room: RoomFilter = field(default_factory=RoomFilter)

    @classmethod
    def from_json(cls, value: Any) -> Filter:
        obj = _check_object(value, "filter")
        event_format = obj.get("event_format", "client")
        if event_format not in ("client", "federation"):
            raise bad_json("filter.event_format must be 'client' or 'federation'")
        return cls(
            event_fields=_string_list(obj, "event_fields", "filter"),
            event_format=event_format,
            presence=EventFilter.from_json(obj.get("presence", {}), "filter.presence"),
            account_data=EventFilter.from_json(obj.get("account_data", {}), "filter.account_data"),
            room=RoomFilter.from_json(obj.get("room", {}), "filter.room"),
        )


DEFAULT_FILTER = Filter()


def apply_event_fields(event: JsonDict, fields: Sequence[str] | None) -> JsonDict:
    """Keep only ``fields`` of a serialised event (the filter's ``event_fields``).

    A field is a dot-separated path; ``\\.`` is a literal dot in a key name.
    """
    if fields is None:
        return event
    result: JsonDict = {}
    for path in fields:
        parts = _split_field(path)
        source: Any = event
        for part in parts[:-1]:
            source = source.get(part) if isinstance(source, dict) else None
        if not isinstance(source, dict) or parts[-1] not in source:
            continue
        target = result
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = source[parts[-1]]
    return result


def _split_field(path: str) -> list[str]:
    parts = [""]
    index = 0
    while index < len(path):
        char = path[index]
        if char == "\\" and index + 1 < len(path) and path[index + 1] in ".\\":
            parts[-1] += path[index + 1]
            index += 2
            continue
        if char == ".":
            parts.append("")
        else:
            parts[-1] += char
        index += 1
    return parts


class FilterHandler:
    def __init__(self, store: FilterStore, server_name: str) -> None:
        self.store = store
        self.server_name = server_name

    def _check_owner(self, requester_user_id: str, user_id: str, verb: str) -> None:
        if requester_user_id != user_id:
            raise forbidden(f"Cannot {verb} filters for other users")
        if user_id.rsplit(":", 1)[-1] != self.server_name:
            raise forbidden(f"Can only {verb} filters for local users")

    async def create_filter(
        self, requester_user_id: str, user_id: str, filter_json: JsonDict
    ) -> str:
        self._check_owner(requester_user_id, user_id, "create")
        Filter.from_json(filter_json)  # validates
        return str(await self.store.add_filter(user_id, filter_json))

    async def get_filter_json(
        self, requester_user_id: str, user_id: str, filter_id: str
    ) -> JsonDict:
        self._check_owner(requester_user_id, user_id, "get")
        stored = None
        if filter_id.isascii() and filter_id.isdigit() and len(filter_id) < 19:
            stored = await self.store.get_filter(user_id, int(filter_id))
        if stored is None:
            raise not_found("No such filter")
        return stored

    async def resolve(self, user_id: str, param: str | None) -> Filter:
        """/sync's ``filter`` parameter: a filter ID, or a filter as JSON (starts with ``{``)."""
        if param is None or param == "":
            return DEFAULT_FILTER
        if param.startswith("{"):
            try:
                value = json.loads(param)
            except ValueError:
                raise MatrixError(
                    400, "M_NOT_JSON", "The filter parameter is not valid JSON"
                ) from None
            return Filter.from_json(value)
        stored = None
        if param.isascii() and param.isdigit() and len(param) < 19:
            stored = await self.store.get_filter(user_id, int(param))
        if stored is None:
            raise not_found("No such filter")
        return Filter.from_json(stored)
