"""Room aliases and the room directory.

For the rest of the server:

- ``resolve_alias(alias)``: the room an alias points to (``/join/{alias}``, ``GET
  /directory/room``). Remote aliases are asked of their server through
  ``remote_alias_query`` (404 without it).
- ``check_new_room_alias(room_alias_name)`` then ``create_alias_for_new_room(alias,
  room_id, creator)``: ``/createRoom``'s ``room_alias_name``, checked before the room is
  created and associated after.
- ``check_canonical_alias(room_id, content)``: the ``m.room.canonical_alias`` content
  check (400 M_BAD_ALIAS / M_INVALID_PARAM) to run before sending that state event.
"""

from __future__ import annotations

import base64
import logging
import string
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.auth.power_levels import get_required_power_level, get_user_power_level
from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.events.model import Event, StateKey
from homeserver.handlers.event_creation import EventCreator, EventSpec
from homeserver.types import RoomAlias
from storage.directory import DirectoryStore, PublicRoomRow
from storage.events import EventStore

logger = logging.getLogger(__name__)

MAX_ALIAS_LENGTH = 255
# The most rooms one page of the public room list holds (Synapse's cap).
MAX_PUBLIC_ROOMS_IN_RESPONSE = 100
CANONICAL_ALIAS = "m.room.canonical_alias"

IsServerAdmin = Callable[[str], Awaitable[bool]]
RemoteAliasQuery = Callable[[str, str], Awaitable[tuple[str, list[str]] | None]]
# (server, query) -> that server's public room list (GET/POST /publicRooms over federation).
RemotePublicRooms = Callable[[str, "PublicRoomsQuery"], Awaitable[dict[str, Any]]]


async def _nobody_is_admin(user_id: str) -> bool:
    return False


@dataclass(frozen=True)
class AliasMapping:
    room_id: str
    servers: list[str]


def parse_room_alias(alias: str) -> RoomAlias:
    """Parse an alias given by a client; 400 M_INVALID_PARAM if it is not one."""
    try:
        parsed = RoomAlias.parse(alias)
    except ValueError:
        raise invalid_param(f"Room alias {alias!r} is invalid") from None
    if len(alias) > MAX_ALIAS_LENGTH:
        raise invalid_param(f"Room aliases are at most {MAX_ALIAS_LENGTH} characters")
    return parsed


def _check_localpart(localpart: str) -> None:
    if any(c in localpart for c in string.whitespace):
        raise invalid_param("Room alias localparts cannot contain whitespace")
    if ":" in localpart:
        # The first ':' separates localpart and server: a second would be ambiguous.
        raise invalid_param("Room alias localparts cannot contain ':'")


@dataclass(frozen=True)
class PublicRoomsQuery:
    limit: int | None = None
    since: str | None = None
    generic_search_term: str | None = None
    room_types: list[str | None] | None = None
    server: str | None = None


@dataclass(frozen=True)
class _Bound:
    """A position in the list (ordered by joined members, then room ID, both descending)."""

    forwards: bool
    joined_members: int
    room_id: str

    def to_token(self) -> str:
        raw = f"{'f' if self.forwards else 'b'}{self.joined_members}_{self.room_id}"
        return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")

    @classmethod
    def from_token(cls, token: str) -> _Bound:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
            direction, rest = raw[0], raw[1:]
            joined, room_id = rest.split("_", 1)
            if direction not in "fb" or not joined.isdigit():
                raise ValueError(token)
            return cls(direction == "f", int(joined), room_id)
        except (ValueError, IndexError, UnicodeDecodeError):
            raise invalid_param("Invalid pagination token 'since'") from None

    def is_after(self, row: PublicRoomRow) -> bool:
        """Whether ``row`` comes strictly after this position in list order."""
        return (row.joined_members, row.room_id) < (self.joined_members, self.room_id)


class DirectoryHandler:
    def __init__(
        self,
        *,
        server_name: str,
        store: DirectoryStore,
        event_store: EventStore,
        event_creator: EventCreator,
        require_membership_for_aliases: bool = True,
        enable_room_list_search: bool = True,
        is_server_admin: IsServerAdmin | None = None,
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.event_store = event_store
        self.event_creator = event_creator
        self.require_membership_for_aliases = require_membership_for_aliases
        self.enable_room_list_search = enable_room_list_search
        self.is_server_admin = is_server_admin or _nobody_is_admin
        # (server, alias) -> (room ID, servers) or None if unknown there; set when
        # federation is wired (federation/membership.py).
        self.remote_alias_query: RemoteAliasQuery | None = None
        # Set when federation is wired (federation/queries.py); 404 without it.
        self.remote_public_rooms: RemotePublicRooms | None = None

    # --- resolving --------------------------------------------------------------------

    async def resolve_alias(self, alias: str) -> AliasMapping:
        """The room ``alias`` points to and servers to join it through.

        400 M_INVALID_PARAM for a malformed alias, 404 M_NOT_FOUND for an unknown one.
        """
        parsed = parse_room_alias(alias)
        if parsed.domain != self.server_name:
            return await self._resolve_remote_alias(parsed)
        record = await self.store.get_alias(parsed.to_string())
        if record is None:
            raise not_found(f"Room alias {alias} not found")
        joined = await self.store.get_joined_servers(record.room_id)
        # This server first, as Synapse does: it is the one that surely knows the alias.
        servers = [self.server_name] + [s for s in joined if s != self.server_name]
        return AliasMapping(record.room_id, servers)

    async def _resolve_remote_alias(self, alias: RoomAlias) -> AliasMapping:
        """Ask the alias's server (``GET /_matrix/federation/v1/query/directory``)."""
        query = self.remote_alias_query
        if query is None:
            raise not_found(f"Room alias {alias.to_string()} not found")
        answer = await query(alias.domain, alias.to_string())
        if answer is None:
            raise not_found(f"Room alias {alias.to_string()} not found")
        room_id, servers = answer
        # The servers it names are in the room; the alias's own server may not be.
        return AliasMapping(room_id, list(dict.fromkeys([*servers, alias.domain])))

    # --- creating and deleting --------------------------------------------------------

    async def create_alias(
        self, user_id: str, alias: str, room_id: Any, *, app_service: bool = False
    ) -> None:
        """``PUT /directory/room/{roomAlias}``."""
        parsed = self._local_alias(alias)
        if not isinstance(room_id, str) or not room_id.startswith("!"):
            raise invalid_param("room_id must be a room ID")
        if await self.event_store.get_room_version(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        if self.require_membership_for_aliases and not app_service:
            if not await self._is_joined(user_id, room_id) and not await self.is_server_admin(
                user_id
            ):
                raise forbidden("You must be in the room to create an alias for it")
        if not await self.store.create_alias(parsed.to_string(), room_id, user_id):
            raise MatrixError(409, "M_UNKNOWN", f"Room alias {alias} already exists")

    async def delete_alias(self, user_id: str, alias: str) -> str:
        """``DELETE /directory/room/{roomAlias}``: by its creator, a server admin, or a
        member who may send ``m.room.canonical_alias``. Returns the room it pointed to."""
        parsed = self._local_alias(alias)
        record = await self.store.get_alias(parsed.to_string())
        if record is None:
            raise not_found(f"Room alias {alias} not found")
        if record.creator != user_id and not await self.can_change_room_list(
            user_id, record.room_id
        ):
            raise forbidden("You don't have permission to delete the alias")
        room_id = await self.store.delete_alias(parsed.to_string())
        if room_id is None:
            # Someone else deleted it between our read and our delete.
            raise not_found(f"Room alias {alias} not found")
        await self._drop_from_canonical_alias(user_id, room_id, parsed.to_string())
        return room_id

    async def get_room_aliases(self, user_id: str, room_id: str) -> list[str]:
        """``GET /rooms/{roomId}/aliases``: for members, admins, and world-readable rooms."""
        if not await self._is_joined(user_id, room_id) and not await self.is_server_admin(user_id):
            visibility = await self.event_store.get_current_state_event(
                room_id, "m.room.history_visibility"
            )
            if visibility is None or visibility.content.get("history_visibility") != (
                "world_readable"
            ):
                # Unknown rooms answer the same, so room IDs cannot be probed.
                raise forbidden(f"User {user_id} is not in room {room_id}")
        return await self.store.get_aliases_for_room(room_id)

    # --- for /createRoom --------------------------------------------------------------

    async def check_new_room_alias(self, room_alias_name: Any) -> str:
        """Check ``/createRoom``'s ``room_alias_name`` before creating the room.

        Returns the full alias (``#name:this_server``). 400 M_INVALID_PARAM if the name is
        unusable, 400 M_ROOM_IN_USE if the alias is taken, as Synapse.
        """
        if not isinstance(room_alias_name, str) or not room_alias_name:
            raise invalid_param("room_alias_name must be a non-empty string")
        _check_localpart(room_alias_name)
        alias = f"#{room_alias_name}:{self.server_name}"
        parse_room_alias(alias)
        if await self.store.get_alias(alias) is not None:
            raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
        return alias

    async def create_alias_for_new_room(self, alias: str, room_id: str, creator: str) -> None:
        """Associate the alias ``check_new_room_alias`` returned with the new room.

        400 M_ROOM_IN_USE if another request took the alias in between.
        """
        if not await self.store.create_alias(alias, room_id, creator):
            raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")

    # --- m.room.canonical_alias -------------------------------------------------------

    async def check_canonical_alias(self, room_id: str, content: Mapping[str, Any]) -> None:
        """Check new ``m.room.canonical_alias`` content before it is sent, as Synapse does.

        Each alias newly named (``alias``, or ``alt_aliases`` not already there) must be a
        valid alias (else 400 M_INVALID_PARAM) pointing to this room (else 400 M_BAD_ALIAS).
        """
        previous = await self.event_store.get_current_state_event(room_id, CANONICAL_ALIAS)
        previous_alias = previous.content.get("alias") if previous is not None else None
        previous_alt: Any = previous.content.get("alt_aliases", []) if previous else []
        if not isinstance(previous_alt, list):
            previous_alt = []

        alias = content.get("alias")
        if alias is not None and alias != previous_alias:
            if not isinstance(alias, str):
                raise invalid_param("The alias must be of type string")
            if alias:  # "" clears the canonical alias
                await self._check_points_to_room(alias, room_id)

        alt_aliases = content.get("alt_aliases", [])
        if not isinstance(alt_aliases, list):
            raise invalid_param("The alt_aliases property must be a list")
        for alt in alt_aliases:
            if not isinstance(alt, str):
                raise invalid_param("Each alt_alias must be of type string")
        known = {a for a in previous_alt if isinstance(a, str)}
        for alt in dict.fromkeys(alt_aliases):
            if alt not in known:
                await self._check_points_to_room(alt, room_id)

    async def _check_points_to_room(self, alias: str, room_id: str) -> None:
        try:
            mapping = await self.resolve_alias(alias)
        except MatrixError as e:
            if e.errcode == "M_NOT_FOUND":
                raise MatrixError(
                    400, "M_BAD_ALIAS", f"Room alias {alias} does not point to the room"
                ) from None
            raise
        if mapping.room_id != room_id:
            raise MatrixError(400, "M_BAD_ALIAS", f"Room alias {alias} does not point to the room")

    # --- permissions ------------------------------------------------------------------

    async def can_change_room_list(self, user_id: str, room_id: str) -> bool:
        """Whether the user may delete others' aliases of the room or (un)publish it.

        Server admins may; other users must be joined and able to send
        ``m.room.canonical_alias`` (a room moderator, by default power levels).
        """
        if await self.is_server_admin(user_id):
            return True
        state = await self._auth_state(room_id, user_id)
        member = state.get(("m.room.member", user_id))
        if member is None or member.membership != "join":
            return False
        create = state.get(("m.room.create", ""))
        if create is None:
            return False
        room_version = create.room_version
        required = get_required_power_level(CANONICAL_ALIAS, True, state, room_version)
        return get_user_power_level(user_id, state, room_version) >= required

    async def _auth_state(self, room_id: str, user_id: str) -> dict[StateKey, Event]:
        state_ids = await self.event_store.get_current_state_ids(room_id)
        wanted = {
            key: state_ids[key]
            for key in (
                ("m.room.create", ""),
                ("m.room.power_levels", ""),
                ("m.room.member", user_id),
            )
            if key in state_ids
        }
        events = await self.event_store.get_events(wanted.values())
        return {key: events[event_id] for key, event_id in wanted.items() if event_id in events}

    async def _is_joined(self, user_id: str, room_id: str) -> bool:
        member = await self.event_store.get_current_state_event(room_id, "m.room.member", user_id)
        return member is not None and member.membership == "join"

    def _local_alias(self, alias: str) -> RoomAlias:
        parsed = parse_room_alias(alias)
        _check_localpart(parsed.localpart)
        if parsed.domain != self.server_name:
            raise invalid_param("Room alias must be on this server")
        return parsed

    async def _drop_from_canonical_alias(self, user_id: str, room_id: str, alias: str) -> None:
        """After deleting an alias, take it out of the room's canonical alias event."""
        event = await self.event_store.get_current_state_event(room_id, CANONICAL_ALIAS)
        if event is None:
            return
        content = dict(event.content)
        changed = False
        if content.get("alias") == alias:
            del content["alias"]
            changed = True
        alt_aliases = content.get("alt_aliases")
        if isinstance(alt_aliases, list) and alias in alt_aliases:
            remaining = [a for a in alt_aliases if a != alias]
            if remaining:
                content["alt_aliases"] = remaining
            else:
                del content["alt_aliases"]
            changed = True
        if not changed:
            return
        try:
            await self.event_creator.send(room_id, EventSpec(CANONICAL_ALIAS, user_id, content, ""))
        except MatrixError as e:
            # The alias is gone either way; a user without power just leaves the event stale.
            logger.info("not updating the canonical alias of %s: %s", room_id, e)

    # --- the room directory -----------------------------------------------------------

    async def get_room_visibility(self, room_id: str) -> str:
        """``GET /directory/list/room/{roomId}``."""
        is_public = await self.store.get_room_is_public(room_id)
        if is_public is None:
            raise not_found(f"Unknown room {room_id}")
        return "public" if is_public else "private"

    async def set_room_visibility(
        self, user_id: str, room_id: str, visibility: Any, *, is_guest: bool = False
    ) -> None:
        """``PUT /directory/list/room/{roomId}``: by room moderators and server admins."""
        if visibility not in ("public", "private"):
            raise invalid_param("visibility must be 'public' or 'private'")
        if is_guest:
            raise forbidden("Guests cannot edit the published room list")
        if visibility == "public" and not self.enable_room_list_search:
            raise forbidden("This server does not publish rooms in its room list")
        if await self.event_store.get_room_version(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        if not await self.can_change_room_list(user_id, room_id):
            raise forbidden("You must be a moderator in the room to edit its room list entry")
        await self.store.set_room_is_public(room_id, visibility == "public")

    async def get_public_rooms(self, query: PublicRoomsQuery) -> dict[str, Any]:
        """``GET/POST /publicRooms``: published rooms, most joined members first."""
        if query.server is not None and query.server != self.server_name:
            return await self._remote_public_rooms(query)
        if not self.enable_room_list_search:
            return {"chunk": [], "total_room_count_estimate": 0}
        limit = query.limit
        if limit is not None and limit < 0:
            raise invalid_param("limit must not be negative")
        if not limit or limit > MAX_PUBLIC_ROOMS_IN_RESPONSE:
            limit = MAX_PUBLIC_ROOMS_IN_RESPONSE
        bound = _Bound.from_token(query.since) if query.since else None

        rooms = [row for row in await self.store.get_public_rooms() if _listable(row)]
        total = len(rooms)
        rooms = [row for row in rooms if _matches(row, query)]
        rooms.sort(key=lambda row: (row.joined_members, row.room_id), reverse=True)

        response: dict[str, Any] = {"total_room_count_estimate": total}
        if bound is None or bound.forwards:
            candidates = [r for r in rooms if bound is None or bound.is_after(r)]
            page = candidates[:limit]
            if len(candidates) > limit:
                last = page[-1]
                response["next_batch"] = _Bound(True, last.joined_members, last.room_id).to_token()
            if bound is not None:
                first = page[0] if page else None
                response["prev_batch"] = (
                    _Bound(False, first.joined_members, first.room_id)
                    if first is not None
                    else _Bound(False, 0, "")
                ).to_token()
        else:
            candidates = [
                r
                for r in rooms
                if (r.joined_members, r.room_id) > (bound.joined_members, bound.room_id)
            ]
            page = candidates[-limit:]
            if page:
                last = page[-1]
                response["next_batch"] = _Bound(True, last.joined_members, last.room_id).to_token()
            if len(candidates) > limit:
                first = page[0]
                response["prev_batch"] = _Bound(
                    False, first.joined_members, first.room_id
                ).to_token()
        response["chunk"] = [_room_entry(row) for row in page]
        return response

    async def _remote_public_rooms(self, query: PublicRoomsQuery) -> dict[str, Any]:
        if self.remote_public_rooms is None or query.server is None:
            raise not_found(f"Cannot fetch the public room list of {query.server}")
        return await self.remote_public_rooms(query.server, query)


def _state_string(row: PublicRoomRow, event_type: str, key: str) -> str | None:
    value = row.state.get(event_type, {}).get(key)
    return value if isinstance(value, str) else None


def _listable(row: PublicRoomRow) -> bool:
    """Published rooms are listed when someone can get in or read them, as Synapse."""
    join_rule = _state_string(row, "m.room.join_rules", "join_rule")
    visibility = _state_string(row, "m.room.history_visibility", "history_visibility")
    return row.joined_members > 0 and (
        join_rule in ("public", "knock", "knock_restricted") or visibility == "world_readable"
    )


def _matches(row: PublicRoomRow, query: PublicRoomsQuery) -> bool:
    if query.room_types:
        if _state_string(row, "m.room.create", "type") not in query.room_types:
            return False
    term = query.generic_search_term
    if term:
        needle = term.casefold()
        for event_type, key in (
            ("m.room.name", "name"),
            ("m.room.topic", "topic"),
            ("m.room.canonical_alias", "alias"),
        ):
            value = _state_string(row, event_type, key)
            if value is not None and needle in value.casefold():
                return True
        return False
    return True


def _room_entry(row: PublicRoomRow) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "room_id": row.room_id,
        "name": _state_string(row, "m.room.name", "name"),
        "topic": _state_string(row, "m.room.topic", "topic"),
        "canonical_alias": _state_string(row, "m.room.canonical_alias", "alias"),
        "num_joined_members": row.joined_members,
        "avatar_url": _state_string(row, "m.room.avatar", "url"),
        "world_readable": _state_string(row, "m.room.history_visibility", "history_visibility")
        == "world_readable",
        "guest_can_join": _state_string(row, "m.room.guest_access", "guest_access") == "can_join",
        "join_rule": _state_string(row, "m.room.join_rules", "join_rule"),
        "room_type": _state_string(row, "m.room.create", "type"),
    }
    return {key: value for key, value in entry.items() if value is not None}
