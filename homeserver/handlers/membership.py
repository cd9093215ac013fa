"""Room membership changes of local users: join, invite, leave, kick, ban, unban, knock, forget.

Every change is an ``m.room.member`` event sent through the ``EventCreator``, so the auth
rules have the last word; the checks here only give the clearer errors Synapse gives for
the obvious mistakes (unbanning someone who is not banned, kicking someone not in the room).
Rooms this server is not in (joins, knocks, rejected invites) and invites of users of other
servers go through the federation handshakes (``federation`` below, set by the app); without
it those requests get a clear error rather than an event nobody else will ever see.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from homeserver.auth.power_levels import get_named_level, get_user_power_level
from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.events.model import Event, JsonDict, StateKey
from homeserver.handlers.directory import DirectoryHandler
from homeserver.handlers.event_creation import EventCreator, EventSpec
from homeserver.types import Requester, UserID
from storage.events import EventStore, RoomHead
from storage.room_members import RoomMemberStore

logger = logging.getLogger(__name__)

MEMBER = "m.room.member"
ACTIONS = ("join", "invite", "leave", "kick", "ban", "unban", "knock")
# Membership events of these kinds carry the target's profile (Synapse's defaults,
# include_profile_data_on_invite included).
_PROFILE_MEMBERSHIPS = ("join", "knock", "invite")


class ProfileSource(Protocol):
    async def get_profile(self, user_id: str) -> dict[str, Any] | None:
        """A local user's profile fields (``displayname``, ``avatar_url``...), if any."""
        ...


class RemoteMembershipActions(Protocol):
    """The federation side of membership (federation/membership.py implements it)."""

    async def is_resident(self, room_id: str) -> bool: ...

    async def join(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> Event: ...

    async def knock(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> Event: ...

    async def leave(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> Event: ...

    async def countersign_invite(self, event: Event) -> Event: ...


def federation_unavailable(what: str) -> MatrixError:
    # 502: the request needs another server, and this one cannot talk to it (yet).
    return MatrixError(
        502, "M_UNKNOWN", f"{what} needs federation, which this server does not support yet"
    )


def parse_user_id(user_id: Any, what: str = "user_id") -> str:
    if not isinstance(user_id, str):
        raise invalid_param(f"{what} must be a user ID string")
    try:
        return UserID.parse(user_id).to_string()
    except ValueError as e:
        raise invalid_param(f"{what}: {e}") from None


def optional_reason(body: Mapping[str, Any]) -> str | None:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise MatrixError(400, "M_BAD_JSON", "reason must be a string")
    return reason


class MembershipHandler:
    def __init__(
        self,
        *,
        server_name: str,
        event_creator: EventCreator,
        event_store: EventStore,
        member_store: RoomMemberStore,
        profiles: ProfileSource,
        directory: DirectoryHandler,
    ) -> None:
        self.server_name = server_name
        self.creator = event_creator
        self.store = event_store
        self.members = member_store
        self.profiles = profiles
        self.directory = directory
        self.federation: RemoteMembershipActions | None = None

    def is_mine(self, user_id: str) -> bool:
        return user_id.split(":", 1)[-1] == self.server_name

    async def resolve_room(self, room_id_or_alias: str) -> str:
        """The room ID named by a room ID or a local alias."""
        if room_id_or_alias.startswith("!"):
            if len(room_id_or_alias) < 2 or len(room_id_or_alias.encode("utf-8")) > 255:
                raise invalid_param(f"{room_id_or_alias!r} is not a valid room ID")
            return room_id_or_alias
        if not room_id_or_alias.startswith("#"):
            raise invalid_param(f"{room_id_or_alias!r} is neither a room ID nor a room alias")
        return (await self.resolve_room_and_servers(room_id_or_alias))[0]

    async def resolve_room_and_servers(self, room_id_or_alias: str) -> tuple[str, list[str]]:
        """The room ID named by a room ID or an alias, and servers to join it through."""
        if room_id_or_alias.startswith("#"):
            mapping = await self.directory.resolve_alias(room_id_or_alias)
            return mapping.room_id, list(mapping.servers)
        return await self.resolve_room(room_id_or_alias), []

    async def update_membership(
        self,
        requester: Requester,
        target: str,
        room_id: str,
        action: str,
        *,
        reason: str | None = None,
        content: Mapping[str, Any] | None = None,
        txn: Any = None,
        servers: Sequence[str] = (),
    ) -> Event:
        """Send the member event for ``action`` by ``requester`` on ``target``; returns it.

        ``servers``: where to reach a room this server is not in (``via``, alias servers).
        """
        if action not in ACTIONS:
            raise invalid_param(f"Unknown membership action {action!r}")
        membership = "leave" if action in ("kick", "unban") else action
        sender = requester.user_id
        target = parse_user_id(target)
        head = await self.store.get_room_head(room_id)
        remote = await self._remote_membership(
            requester, target, room_id, action, head, reason, content, servers
        )
        if remote is not None:
            return remote
        if head is None:
            if action in ("join", "knock"):
                # A room we are not in: it would take a federated join or knock.
                if room_id.split(":", 1)[-1] != self.server_name and ":" in room_id:
                    raise federation_unavailable("Joining a room on another server")
            raise not_found(f"Unknown room {room_id}")
        countersign = None
        if not self.is_mine(target):
            if action == "invite":
                if self.federation is None:
                    raise federation_unavailable("Inviting a user of another server")
                countersign = self.federation.countersign_invite
        event_content: JsonDict = dict(content or {})
        # Only the resident server may vouch for a restricted join (it signs the event).
        event_content.pop("join_authorised_via_users_server", None)
        event_content["membership"] = membership
        if reason is not None:
            event_content["reason"] = reason
        if membership in _PROFILE_MEMBERSHIPS and self.is_mine(target):
            profile = await self.profiles.get_profile(target) or {}
            for key in ("displayname", "avatar_url"):
                value = profile.get(key)
                if isinstance(value, str) and key not in event_content:
                    event_content[key] = value
        await self._precheck(head, sender, target, action)
        if membership == "join" and requester.is_guest:
            guest_access = await self._state_event(head, ("m.room.guest_access", ""))
            if guest_access is None or guest_access.content.get("guest_access") != "can_join":
                raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed")
        if membership == "join" and head.room_version.restricted_join_rule:
            await self._authorise_restricted_join(room_id, head, target, event_content)
        return await self.creator.send(
            room_id,
            EventSpec(MEMBER, sender, event_content, target),
            txn=txn,
            countersign=countersign,
        )

    async def _remote_membership(
        self,
        requester: Requester,
        target: str,
        room_id: str,
        action: str,
        head: RoomHead | None,
        reason: str | None,
        content: Mapping[str, Any] | None,
        servers: Sequence[str],
    ) -> Event | None:
        """A join, knock or leave of our own user in a room this server is not in, done
        through another server; None when the room is ours to change directly."""
        federation = self.federation
        if federation is None or action not in ("join", "knock", "leave"):
            return None
        if target != requester.user_id or await federation.is_resident(room_id):
            return None
        if head is None and action == "leave":
            return None  # nothing to leave: the usual 404
        if head is None and room_id.partition(":")[2] == self.server_name:
            return None  # a room of ours we never had: the usual 404
        event_content: JsonDict = {
            k: v for k, v in (content or {}).items() if k != "join_authorised_via_users_server"
        }
        if reason is not None:
            event_content["reason"] = reason
        hints = list(servers)
        current = await self._state_event(head, (MEMBER, target)) if head is not None else None
        if current is not None and current.membership == "invite":
            # The inviting server is surely in the room.
            hints.append(current.sender.partition(":")[2])
        if action == "leave":
            return await federation.leave(target, room_id, hints, event_content)
        if action in _PROFILE_MEMBERSHIPS:
            profile = await self.profiles.get_profile(target) or {}
            for key in ("displayname", "avatar_url"):
                value = profile.get(key)
                if isinstance(value, str) and key not in event_content:
                    event_content[key] = value
        if action == "knock":
            return await federation.knock(target, room_id, hints, event_content)
        if requester.is_guest:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests cannot join remote rooms")
        return await federation.join(target, room_id, hints, event_content)

    async def _precheck(self, head: RoomHead, sender: str, target: str, action: str) -> None:
        target_event = await self._state_event(head, (MEMBER, target))
        old = target_event.membership if target_event is not None else None
        if action == "unban" and old != "ban":
            raise MatrixError(
                403, "M_BAD_STATE", f"Cannot unban user who was not banned (membership={old})"
            )
        # A banned user's own join or knock is left to the auth rules (M_FORBIDDEN, as the
        # spec's examples); others acting on a banned user get Synapse's M_BAD_STATE.
        if old == "ban" and action not in ("ban", "unban", "leave", "join", "knock"):
            raise MatrixError(403, "M_BAD_STATE", f"Cannot {action} user who was banned")
        if action == "kick" and old in (None, "leave", "ban"):
            raise forbidden("The target user is not in the room")

    async def _authorise_restricted_join(
        self, room_id: str, head: RoomHead, target: str, content: JsonDict
    ) -> None:
        """For a join under a restricted join rule, name a local member who may invite.

        Only needed when the user is neither invited nor joined already; the auth rules
        then need a resident user with invite power to vouch, and a membership of the
        target in one of the allowed rooms.
        """
        join_rules = await self._state_event(head, ("m.room.join_rules", ""))
        if join_rules is None:
            return
        rule = join_rules.content.get("join_rule")
        if rule not in ("restricted", "knock_restricted"):
            return
        current = await self._state_event(head, (MEMBER, target))
        if current is not None and current.membership in ("join", "invite"):
            return
        allow = join_rules.content.get("allow")
        allowed_rooms = [
            entry.get("room_id")
            for entry in (allow if isinstance(allow, list) else [])
            if isinstance(entry, dict) and entry.get("type") == "m.room_membership"
        ]
        joined = set(await self.store.get_rooms_for_user(target))
        if not any(isinstance(r, str) and r in joined for r in allowed_rooms):
            if rule == "knock_restricted":
                return  # let the auth rules give their reason
            raise forbidden("You do not belong to any of the rooms this room admits members of")
        auth_state = await self._auth_state(head)
        invite_level = get_named_level("invite", auth_state, head.room_version)
        members = await self.members.get_current_members(room_id, ("join",))
        candidates = [m.user_id for m in members if self.is_mine(m.user_id)]
        for user_id in candidates:
            if get_user_power_level(user_id, auth_state, head.room_version) >= invite_level:
                content["join_authorised_via_users_server"] = user_id
                return
        raise forbidden("No user of this server can authorise your join to this room")

    async def _auth_state(self, head: RoomHead) -> dict[StateKey, Event]:
        keys = [("m.room.create", ""), ("m.room.power_levels", "")]
        ids = [head.state[k] for k in keys if k in head.state]
        events = await self.store.get_events(ids)
        return {event.state_pair: event for event in events.values()}

    async def _state_event(self, head: RoomHead, key: StateKey) -> Event | None:
        event_id = head.state.get(key)
        return await self.store.get_event(event_id) if event_id is not None else None

    async def forget(self, requester: Requester, room_id: str) -> None:
        user_id = requester.user_id
        last = await self.members.get_last_membership(user_id, room_id)
        if last is None:
            if await self.store.get_room_version(room_id) is None:
                raise not_found(f"Unknown room {room_id}")
            return
        if last.membership not in ("leave", "ban"):
            raise MatrixError(400, "M_UNKNOWN", f"User {user_id} is in room {room_id}")
        await self.members.forget(user_id, room_id)


class RoomMembershipSync:
    """Keeps a user's member events in step with their profile and account.

    The accounts side calls it after a profile change and on deactivation.
    """

    def __init__(self, membership: MembershipHandler, member_store: RoomMemberStore) -> None:
        self._membership = membership
        self._members = member_store

    async def profile_changed(
        self, requester: Requester, displayname: str | None, avatar_url: str | None
    ) -> None:
        user_id = requester.user_id
        rooms = await self._members.get_rooms_by_membership(user_id, ("join",))
        content: JsonDict = {}
        if displayname is not None:
            content["displayname"] = displayname
        if avatar_url is not None:
            content["avatar_url"] = avatar_url
        for room_id, _ in rooms:
            try:
                await self._send_join(requester, room_id, content)
            except MatrixError as e:
                # One room refusing (e.g. power levels) must not stop the others.
                logger.info("profile update of %s in %s failed: %s", user_id, room_id, e)

    async def _send_join(self, requester: Requester, room_id: str, content: JsonDict) -> None:
        handler = self._membership
        event_content = {**content, "membership": "join"}
        await handler.creator.send(
            room_id, EventSpec(MEMBER, requester.user_id, event_content, requester.user_id)
        )

    async def user_deactivated(self, user_id: str) -> None:
        requester = Requester(user_id=user_id, device_id=None)
        rooms = await self._members.get_rooms_by_membership(user_id, ("join", "invite", "knock"))
        for room_id, _ in rooms:
            try:
                await self._membership.update_membership(requester, user_id, room_id, "leave")
            except MatrixError as e:
                logger.warning("could not part deactivated %s from %s: %s", user_id, room_id, e)
