"""Joining, leaving, knocking and inviting across servers.

``RemoteMembership`` is the joining side: a local user joins (``make_join``/``send_join``),
knocks on (``make_knock``/``send_knock``) or rejects an invite to / retracts a knock on
(``make_leave``/``send_leave``) a room this server is not in, and invites a user of another
server (``/invite`` v2, whose answer carries their server's signature).

``ResidentMembership`` is the resident side of the same handshakes: it hands out event
templates, accepts the signed membership events through the inbound PDU checks, and
co-signs invites of our users into rooms elsewhere.

Rooms this server is not in but knows of (an invite, a knock, a rejected invite) are kept
as outlier membership events with the member's row in ``current_state_events``, so /sync
lists them; the room has no forward extremity until someone here joins.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from signedjson.types import SigningKey

from federation.client import FederationError, HttpResponseError, federation_path
from federation.inbound import CREATE_KEY, FederationEventHandler, PduOutcome, auth_failure
from homeserver.auth.power_levels import get_named_level, get_user_power_level
from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.events.errors import EventValidationError
from homeserver.events.formats import serialize_for_federation
from homeserver.events.hashing import event_reference, make_event, room_id_from_create_event
from homeserver.events.model import Event, JsonDict, StateKey
from homeserver.events.signing import sign_event
from homeserver.events.stripped_state import stripped_state_ids
from homeserver.handlers.event_creation import EventCreator, EventSpec
from homeserver.notifier import Notifier, RoomEventsNotice
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion
from homeserver.util.linearizer import Linearizer
from storage.events import EventStore, NewRoom, RoomHead, StateAt
from storage.room_members import RoomMemberStore

logger = logging.getLogger(__name__)

MEMBER = "m.room.member"
# Errors after which another candidate server may do better (spec, restricted rooms).
_FAILOVER_ERRCODES = frozenset({"M_UNABLE_TO_AUTHORISE_JOIN", "M_UNABLE_TO_GRANT_JOIN"})
_MAKE_PATHS = {
    "join": "/_matrix/federation/v1/make_join/%s/%s",
    "leave": "/_matrix/federation/v1/make_leave/%s/%s",
    "knock": "/_matrix/federation/v1/make_knock/%s/%s",
}
_SEND_PATHS = {
    "join": "/_matrix/federation/v2/send_join/%s/%s",
    "leave": "/_matrix/federation/v2/send_leave/%s/%s",
    "knock": "/_matrix/federation/v1/send_knock/%s/%s",
}


class FederationTransport(Protocol):
    """What is asked of the federation client (federation/client.py)."""

    async def get_json(
        self, destination: str, path: str, args: Any = None, timeout: float | None = None
    ) -> Any: ...

    async def put_json(
        self,
        destination: str,
        path: str,
        args: Any = None,
        data: Any = None,
        timeout: float | None = None,
    ) -> Any: ...


def server_of(identifier: str) -> str:
    return identifier.split(":", 1)[1] if ":" in identifier else ""


def strip_state(pdus: Iterable[Any]) -> list[JsonDict]:
    """Full PDUs (or already stripped events) as the stripped state clients see."""
    stripped = []
    for pdu in pdus:
        if not isinstance(pdu, dict):
            continue
        event_type, state_key = pdu.get("type"), pdu.get("state_key")
        content, sender = pdu.get("content"), pdu.get("sender")
        if not (
            isinstance(event_type, str)
            and isinstance(state_key, str)
            and isinstance(content, dict)
            and isinstance(sender, str)
        ):
            continue
        stripped.append(
            {"type": event_type, "state_key": state_key, "content": content, "sender": sender}
        )
    return stripped


def remote_error(error: Exception, what: str) -> MatrixError:
    """A failed request to another server, as the error our client gets."""
    if isinstance(error, HttpResponseError) and 400 <= error.status < 500:
        extra: JsonDict = {}
        body = error.response_json if isinstance(error.response_json, dict) else {}
        if isinstance(body.get("room_version"), str):
            extra["room_version"] = body["room_version"]
        return MatrixError(
            error.status, error.errcode or "M_UNKNOWN", error.error or f"{what} failed", **extra
        )
    return MatrixError(502, "M_UNKNOWN", f"{what} failed: {error}")


def _random_string(length: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _received(pdu: Any) -> JsonDict:
    """A PDU from another server without what it may not tell us (unsigned)."""
    if not isinstance(pdu, dict):
        raise EventValidationError("not an object")
    return {k: v for k, v in pdu.items() if k != "unsigned"}


class _Base:
    def __init__(
        self,
        *,
        server_name: str,
        signing_key: SigningKey,
        store: EventStore,
        notifier: Notifier,
        room_locks: Linearizer,
        events: FederationEventHandler,
        now_ms: Callable[[], int],
    ) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        self.store = store
        self.notifier = notifier
        self.room_locks = room_locks
        self.events = events
        self.now_ms = now_ms
        self.members = RoomMemberStore(store.db)

    def is_mine(self, user_id: str) -> bool:
        return server_of(user_id) == self.server_name

    async def is_resident(self, room_id: str) -> bool:
        """Whether this server is in the room: it has a timeline there and a joined user."""
        head = await self.store.get_room_head(room_id)
        if head is None or not head.forward_extremities:
            return False
        joined = await self.members.get_current_members(room_id, ("join",))
        return any(self.is_mine(m.user_id) for m in joined)

    async def _persist_out_of_room(
        self, event: Event, room_version: RoomVersion, creator: str | None = None
    ) -> None:
        """Store a membership event of a room we are not in as an outlier that is the
        member's current state there (so /sync shows the invite, knock or departure)."""
        room_id = event.room_id
        event.internal_metadata["outlier"] = True
        async with self.room_locks.lock(room_id):
            if await self.store.get_event(event.event_id) is not None:
                return
            known = await self.store.get_room_version(room_id)
            head = await self.store.get_room_head(room_id)
            new_room = None
            if known is None:
                new_room = NewRoom(room_id, room_version, creator or event.sender, self.now_ms())
            elif head is None:
                # Known from an earlier invite or knock only: nothing to build on.
                head = RoomHead(known, (), 0, {}, None, 0)
            state: dict[StateKey, str] = dict(head.state) if head is not None else {}
            assert event.state_key is not None
            state[(MEMBER, event.state_key)] = event.event_id
            await self.store.persist_events(
                room_id,
                [event],
                head=head,
                now_ms=self.now_ms(),
                current_state=state,
                new_room=new_room,
            )
        self._notify(room_id, [event])

    def _notify(self, room_id: str, events: Sequence[Event]) -> None:
        self.notifier.on_new_room_events(
            RoomEventsNotice(room_id, events, self.store.stream_ids.current_token())
        )


class RemoteMembership(_Base):
    """The joining, knocking, leaving and inviting server's side."""

    def __init__(self, *, client: FederationTransport, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client

    # --- aliases ----------------------------------------------------------------------

    async def query_alias(self, server: str, alias: str) -> tuple[str, list[str]] | None:
        """The room a remote alias names and servers in it; None if the server says
        it does not know the alias."""
        try:
            answer = await self.client.get_json(
                server, "/_matrix/federation/v1/query/directory", args={"room_alias": alias}
            )
        except HttpResponseError as e:
            if e.status == 404:
                return None
            raise remote_error(e, f"Looking up {alias}") from None
        except FederationError as e:
            raise remote_error(e, f"Looking up {alias}") from None
        room_id = answer.get("room_id") if isinstance(answer, dict) else None
        if not isinstance(room_id, str) or not room_id.startswith("!"):
            raise MatrixError(502, "M_UNKNOWN", f"{server} answered the alias query badly")
        servers = answer.get("servers")
        names = [s for s in servers if isinstance(s, str)] if isinstance(servers, list) else []
        return room_id, names

    # --- join -------------------------------------------------------------------------

    async def join(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> Event:
        """Join ``user_id`` to a room this server is not in, through one of ``servers``."""
        candidates = self._candidates(room_id, servers)
        template, room_version, resident = await self._make("join", room_id, user_id, candidates)
        event = self._sign_template(template, room_version, content)
        try:
            answer = await self.client.put_json(
                resident,
                federation_path(_SEND_PATHS["join"], room_id, event.event_id),
                data=serialize_for_federation(event),
            )
        except (FederationError, HttpResponseError) as e:
            raise remote_error(e, f"Joining through {resident}") from None
        if not isinstance(answer, dict):
            raise MatrixError(502, "M_UNKNOWN", f"{resident} sent a malformed send_join answer")
        event = await self._resident_signed(event, answer.get("event"), room_version)
        state, chain = await self._verify_room_state(answer, room_version, room_id)
        create = chain.get(state[CREATE_KEY])
        assert create is not None
        auth_events = {
            e.state_pair: e
            for e in (chain.get(a) for a in event.auth_event_ids)
            if e is not None and e.rejected_reason is None and e.is_state()
        }
        reason = auth_failure(event, auth_events, create)
        if reason is not None:
            raise MatrixError(
                502, "M_UNKNOWN", f"{resident} built a join we cannot accept: {reason}"
            )
        await self._persist_join(event, state, chain, create)
        return event

    async def _persist_join(
        self, event: Event, state: dict[StateKey, str], chain: dict[str, Event], create: Event
    ) -> None:
        room_id = event.room_id
        room_version = event.room_version
        async with self.room_locks.lock(room_id):
            have = await self.store.get_events([*chain, event.event_id])
            if event.event_id in have:
                return
            outliers = [e for eid, e in chain.items() if eid not in have]
            for outlier in outliers:
                outlier.internal_metadata["outlier"] = True
            known = await self.store.get_room_version(room_id)
            head = await self.store.get_room_head(room_id)
            new_room = None
            if known is None:
                creator = create.content.get("creator") or create.sender
                new_room = NewRoom(room_id, room_version, str(creator), create.origin_server_ts)
            elif head is None:
                head = RoomHead(known, (), 0, {}, None, 0)
            result = await self.store.persist_events(
                room_id,
                [*outliers, event],
                head=head,
                now_ms=self.now_ms(),
                state_at={event.event_id: StateAt(state)},
                new_room=new_room,
                replace_extremities=True,
            )
        self._notify(room_id, [e for e in result.events if e.event_id == event.event_id])

    async def _resident_signed(
        self, event: Event, answered: Any, room_version: RoomVersion
    ) -> Event:
        """The resident's copy of our join when it added its signature (restricted
        rooms), else ours."""
        if not isinstance(answered, dict):
            return event
        try:
            pdu = _received(answered)
            theirs = make_event(pdu, room_version)
        except EventValidationError:
            return event
        if theirs.event_id != event.event_id:
            return event
        checked = await self.events.verify_pdu(pdu, room_version)
        if isinstance(checked, PduOutcome) or checked.content != event.content:
            return event
        return checked

    async def _verify_room_state(
        self, answer: JsonDict, room_version: RoomVersion, room_id: str
    ) -> tuple[dict[StateKey, str], dict[str, Event]]:
        """The room state from a send_join answer (by state key) and every event of it
        and of the auth chain, each checked: format, signatures, hashes, auth rules."""
        raw_state = answer.get("state")
        raw_chain = answer.get("auth_chain")
        if not isinstance(raw_state, list) or not isinstance(raw_chain, list):
            raise MatrixError(502, "M_UNKNOWN", "The send_join answer has no state or auth chain")
        checked: dict[str, Event] = {}
        state_ids: list[str] = []
        for position, raw in enumerate([*raw_state, *raw_chain]):
            try:
                pdu = _received(raw)
            except EventValidationError:
                continue
            event = await self.events.verify_pdu(pdu, room_version)
            if isinstance(event, PduOutcome):
                logger.info("dropping an event of the send_join answer: %s", event.reason)
                continue
            if event.room_id != room_id:
                continue
            checked.setdefault(event.event_id, event)
            if position < len(raw_state) and event.is_state():
                state_ids.append(event.event_id)
        create = next(
            (e for e in checked.values() if e.type == "m.room.create" and e.state_key == ""),
            None,
        )
        if create is None or _create_room_id(create) != room_id:
            raise MatrixError(502, "M_UNKNOWN", "The send_join answer has no create event")
        if create.content.get("room_version", "1") != room_version.identifier:
            raise MatrixError(502, "M_UNKNOWN", "The room's create event names another version")
        self._auth_in_order(checked, create)
        state: dict[StateKey, str] = {}
        for event_id in state_ids:
            event = checked[event_id]
            if event.rejected_reason is None:
                state[event.state_pair] = event_id
        state[CREATE_KEY] = create.event_id
        return state, checked

    def _auth_in_order(self, events: dict[str, Event], create: Event) -> None:
        """Check each event against its own auth events, auth events first; an event
        whose auth events are missing or rejected is rejected too."""
        done: set[str] = set()
        pending = dict(events)
        while pending:
            ready = [
                e
                for e in pending.values()
                if all(a in done or a not in events for a in e.auth_event_ids)
            ]
            if not ready:
                # A cycle: nothing here can be trusted.
                for event in pending.values():
                    event.rejected_reason = "auth events form a cycle"
                return
            for event in sorted(ready, key=lambda e: e.depth):
                listed = [events[a] for a in event.auth_event_ids if a in events]
                if len(listed) < len(event.auth_event_ids):
                    event.rejected_reason = event.rejected_reason or "missing auth events"
                else:
                    auth = {
                        a.state_pair: a for a in listed if a.is_state() and not a.rejected_reason
                    }
                    event.rejected_reason = event.rejected_reason or auth_failure(
                        event,
                        auth,
                        create if event is not create else None,
                        listed=listed,
                    )
                done.add(event.event_id)
                del pending[event.event_id]

    # --- knock ------------------------------------------------------------------------

    async def knock(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> Event:
        candidates = self._candidates(room_id, servers)
        template, room_version, resident = await self._make("knock", room_id, user_id, candidates)
        event = self._sign_template(template, room_version, content)
        try:
            answer = await self.client.put_json(
                resident,
                federation_path(_SEND_PATHS["knock"], room_id, event.event_id),
                data=serialize_for_federation(event),
            )
        except (FederationError, HttpResponseError) as e:
            raise remote_error(e, f"Knocking through {resident}") from None
        room_state = answer.get("knock_room_state") if isinstance(answer, dict) else None
        stripped = strip_state(room_state if isinstance(room_state, list) else [])
        event.pdu["unsigned"] = {"knock_room_state": stripped}
        await self._persist_out_of_room(event, room_version, _creator_of(stripped))
        return event

    # --- leave (rejecting an invite, retracting a knock) ------------------------------

    async def leave(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> Event:
        """Reject an invite or retract a knock in a room we are not in. If no server in
        the room can be reached, the invite is still rejected here (as Synapse does)."""
        head = await self.store.get_room_head(room_id)
        current_id = head.state.get((MEMBER, user_id)) if head is not None else None
        current = await self.store.get_event(current_id) if current_id else None
        if current is None or current.membership not in ("invite", "knock"):
            raise not_found(f"{user_id} has no invite or knock in {room_id}")
        hints = list(servers)
        if current.membership == "invite":
            hints.insert(0, server_of(current.sender))
        candidates = [s for s in self._candidates(room_id, hints) if s != self.server_name]
        try:
            template, room_version, resident = await self._make(
                "leave", room_id, user_id, candidates
            )
            event = self._sign_template(template, room_version, content)
            await self.client.put_json(
                resident,
                federation_path(_SEND_PATHS["leave"], room_id, event.event_id),
                data=serialize_for_federation(event),
            )
        except (MatrixError, FederationError, HttpResponseError) as e:
            logger.info("rejecting %s remotely failed (%s): rejecting locally", room_id, e)
            event = self._local_leave(current, content)
        await self._persist_out_of_room(event, event.room_version)
        return event

    def _local_leave(self, membership: Event, content: Mapping[str, Any]) -> Event:
        """A leave that only this server will know of, after the invite or knock."""
        room_version = membership.room_version
        ref: Any = (
            event_reference(membership)
            if room_version.event_format is EventFormat.V1
            else membership.event_id
        )
        pdu: JsonDict = {
            "type": MEMBER,
            "room_id": membership.room_id,
            "sender": membership.state_key,
            "state_key": membership.state_key,
            "content": {**content, "membership": "leave"},
            "depth": membership.depth + 1,
            "origin_server_ts": self.now_ms(),
            "prev_events": [],
            "auth_events": [ref],
        }
        if not room_version.implicit_room_creator:
            pdu["origin"] = self.server_name
        if room_version.uses_opaque_event_ids:
            pdu["event_id"] = f"${_random_string(18)}:{self.server_name}"
        sign_event(pdu, self.server_name, self.signing_key, room_version)
        return make_event(pdu, room_version)

    # --- invite -----------------------------------------------------------------------

    async def countersign_invite(self, event: Event) -> Event:
        """Have the invitee's server sign our invite (``/invite`` v2); the event to persist."""
        assert event.state_key is not None
        destination = server_of(event.state_key)
        room_version = event.room_version
        body = {
            "room_version": room_version.identifier,
            "event": serialize_for_federation(event),
            "invite_room_state": await self._invite_room_state(event),
        }
        try:
            answer = await self.client.put_json(
                destination,
                federation_path(
                    "/_matrix/federation/v2/invite/%s/%s", event.room_id, event.event_id
                ),
                data=body,
            )
        except (FederationError, HttpResponseError) as e:
            raise remote_error(e, f"Inviting through {destination}") from None
        returned = answer.get("event") if isinstance(answer, dict) else None
        try:
            pdu = _received(returned)
            signed = make_event(pdu, room_version)
        except EventValidationError:
            raise MatrixError(
                502, "M_UNKNOWN", f"{destination} answered the invite badly"
            ) from None
        ours = {k: v for k, v in event.pdu.items() if k not in ("signatures", "unsigned")}
        theirs = {k: v for k, v in pdu.items() if k not in ("signatures", "unsigned")}
        if signed.event_id != event.event_id or ours != theirs:
            raise MatrixError(502, "M_UNKNOWN", f"{destination} changed the invite it signed")
        checked = await self.events.verify_pdu(pdu, room_version)
        if isinstance(checked, PduOutcome):
            raise MatrixError(502, "M_UNKNOWN", f"{destination} returned a bad invite")
        return checked

    async def _invite_room_state(self, event: Event) -> list[JsonDict]:
        """The room's stripped-state events and the inviter's membership, as full PDUs
        (spec v1.16: the create event included, formatted for the room version)."""
        head = await self.store.get_room_head(event.room_id)
        if head is None:
            return []
        ids = stripped_state_ids(head.state)
        sender_member = head.state.get((MEMBER, event.sender))
        if sender_member is not None:
            ids.append(sender_member)
        found = await self.store.get_events(ids)
        return [serialize_for_federation(found[i]) for i in ids if i in found]

    # --- the handshake ----------------------------------------------------------------

    def _candidates(self, room_id: str, servers: Iterable[str]) -> list[str]:
        candidates = [s for s in servers if s and s != self.server_name]
        room_server = server_of(room_id)
        if room_server and room_server != self.server_name:
            candidates.append(room_server)
        return list(dict.fromkeys(candidates))

    async def _make(
        self, membership: str, room_id: str, user_id: str, candidates: Sequence[str]
    ) -> tuple[JsonDict, RoomVersion, str]:
        """A valid event template from the first candidate that gives one."""
        if not candidates:
            raise not_found(f"No known servers to reach {room_id} through")
        args = {"ver": list(KNOWN_ROOM_VERSIONS)} if membership != "leave" else None
        last: MatrixError | None = None
        for server in candidates:
            try:
                answer = await self.client.get_json(
                    server, federation_path(_MAKE_PATHS[membership], room_id, user_id), args=args
                )
            except HttpResponseError as e:
                error = remote_error(e, f"make_{membership} on {server}")
                if 400 <= e.status < 500 and e.errcode not in _FAILOVER_ERRCODES | {"M_NOT_FOUND"}:
                    raise error from None
                last = error
                continue
            except FederationError as e:
                last = remote_error(e, f"make_{membership} on {server}")
                continue
            template = _valid_template(answer, membership, room_id, user_id)
            if template is None:
                logger.info("%s sent a malformed make_%s answer", server, membership)
                last = MatrixError(502, "M_UNKNOWN", f"{server} sent a malformed template")
                continue
            return template[0], template[1], server
        assert last is not None
        raise last

    def _sign_template(
        self, template: JsonDict, room_version: RoomVersion, content: Mapping[str, Any]
    ) -> Event:
        pdu = {
            k: v
            for k, v in template.items()
            if k not in ("signatures", "hashes", "unsigned", "event_id", "origin")
        }
        membership = template["content"]["membership"]
        authoriser = template["content"].get("join_authorised_via_users_server")
        event_content = {
            k: v for k, v in content.items() if k != "join_authorised_via_users_server"
        }
        event_content["membership"] = membership
        if isinstance(authoriser, str):
            event_content["join_authorised_via_users_server"] = authoriser
        pdu["content"] = event_content
        pdu["origin_server_ts"] = self.now_ms()
        if not room_version.implicit_room_creator:
            pdu["origin"] = self.server_name
        if room_version.uses_opaque_event_ids:
            pdu["event_id"] = f"${_random_string(18)}:{self.server_name}"
        sign_event(pdu, self.server_name, self.signing_key, room_version)
        try:
            return make_event(pdu, room_version)
        except EventValidationError as e:
            raise MatrixError(502, "M_UNKNOWN", f"The event template is unusable: {e}") from None


def _valid_template(
    answer: Any, membership: str, room_id: str, user_id: str
) -> tuple[JsonDict, RoomVersion] | None:
    """The template and room version of a make_* answer, if it is what the spec says."""
    if not isinstance(answer, dict):
        return None
    version_id = answer.get("room_version", "1")
    room_version = KNOWN_ROOM_VERSIONS.get(version_id) if isinstance(version_id, str) else None
    template = answer.get("event")
    if room_version is None or not isinstance(template, dict):
        return None
    content = template.get("content")
    if (
        template.get("type") != MEMBER
        or template.get("sender") != user_id
        or template.get("state_key") != user_id
        or not isinstance(content, dict)
        or content.get("membership") != membership
    ):
        return None
    # v12 templates may leave room_id out of nothing: it is always named.
    if template.get("room_id") != room_id:
        return None
    if not isinstance(template.get("prev_events"), list) or not isinstance(
        template.get("auth_events"), list
    ):
        return None
    return template, room_version


def _create_room_id(create: Event) -> str | None:
    try:
        return room_id_from_create_event(create.pdu, create.room_version)
    except EventValidationError:
        return None


def _creator_of(stripped: Sequence[JsonDict]) -> str | None:
    for entry in stripped:
        if entry.get("type") == "m.room.create" and entry.get("state_key") == "":
            sender = entry.get("sender")
            return sender if isinstance(sender, str) else None
    return None


class ResidentMembership(_Base):
    """The resident server's side of joins, leaves and knocks, and the invitee server's
    side of invites."""

    def __init__(self, *, event_creator: EventCreator, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.creator = event_creator
        # Passes events accepted through send_join/leave/knock on to the room's other
        # servers (FederationSender.forward_room_events); set by the app.
        self.forward: Callable[[str, list[Event]], None] | None = None

    async def make_membership(
        self, origin: str, membership: str, room_id: str, user_id: str, versions: Sequence[str]
    ) -> JsonDict:
        """``make_join``/``make_leave``/``make_knock``: an event template on our head."""
        if server_of(user_id) != origin:
            raise forbidden("The user is not on the requesting server")
        room_version = await self.store.get_room_version(room_id)
        if room_version is None or not await self.is_resident(room_id):
            raise not_found(f"Unknown room {room_id}")
        if membership != "leave" and room_version.identifier not in versions:
            raise MatrixError(
                400,
                "M_INCOMPATIBLE_ROOM_VERSION",
                f"Your homeserver does not support the features required to {membership} this room",
                room_version=room_version.identifier,
            )
        if membership == "knock" and not room_version.knock_join_rule:
            raise MatrixError(
                400,
                "M_INCOMPATIBLE_ROOM_VERSION",
                "This room version does not support knocking",
                room_version=room_version.identifier,
            )
        content: JsonDict = {"membership": membership}
        async with self.room_locks.lock(room_id):
            head = await self.store.get_room_head(room_id)
            assert head is not None
            if membership == "join" and room_version.restricted_join_rule:
                authoriser = await self._restricted_authoriser(room_id, head, user_id)
                if authoriser is not None:
                    content["join_authorised_via_users_server"] = authoriser
            event = await self.creator.build(
                head, room_id, EventSpec(MEMBER, user_id, content, user_id)
            )
        template = {
            k: v for k, v in event.pdu.items() if k not in ("signatures", "hashes", "unsigned")
        }
        if not room_version.uses_opaque_event_ids:
            template.pop("event_id", None)
        template["origin"] = self.server_name
        return {"room_version": room_version.identifier, "event": template}

    async def _restricted_authoriser(
        self, room_id: str, head: RoomHead, user_id: str
    ) -> str | None:
        """For a restricted join of someone neither invited nor joined: a local user who
        may invite, once the user is seen in one of the rooms the join rule allows."""
        rules_id = head.state.get(("m.room.join_rules", ""))
        rules = await self.store.get_event(rules_id) if rules_id else None
        if rules is None or rules.content.get("join_rule") not in (
            "restricted",
            "knock_restricted",
        ):
            return None
        current_id = head.state.get((MEMBER, user_id))
        current = await self.store.get_event(current_id) if current_id else None
        if current is not None and current.membership in ("join", "invite"):
            return None
        allow = rules.content.get("allow")
        allowed = [
            entry.get("room_id")
            for entry in (allow if isinstance(allow, list) else [])
            if isinstance(entry, dict) and entry.get("type") == "m.room_membership"
        ]
        joined = set(await self.store.get_rooms_for_user(user_id))
        if not any(isinstance(r, str) and r in joined for r in allowed):
            known = [r for r in allowed if isinstance(r, str) and await self.is_resident(r)]
            if not known:
                raise MatrixError(
                    400,
                    "M_UNABLE_TO_AUTHORISE_JOIN",
                    "This server knows none of the rooms that grant access",
                )
            raise forbidden("You are not in any of the rooms that grant access to this room")
        ids = [head.state[k] for k in (CREATE_KEY, ("m.room.power_levels", "")) if k in head.state]
        auth_state = {e.state_pair: e for e in (await self.store.get_events(ids)).values()}
        invite_level = get_named_level("invite", auth_state, head.room_version)
        for member in await self.members.get_current_members(room_id, ("join",)):
            if self.is_mine(member.user_id) and (
                get_user_power_level(member.user_id, auth_state, head.room_version) >= invite_level
            ):
                return member.user_id
        raise MatrixError(400, "M_UNABLE_TO_GRANT_JOIN", "No user here may admit you")

    async def send_membership(
        self, origin: str, membership: str, room_id: str, event_id: str, pdu: Any
    ) -> Event:
        """``send_join``/``send_leave``/``send_knock``: check the signed event and take it
        into the room as any received PDU; returns it as persisted."""
        room_version = await self.store.get_room_version(room_id)
        if room_version is None or not await self.is_resident(room_id):
            raise not_found(f"Unknown room {room_id}")
        try:
            received = _received(pdu)
            event = make_event(dict(received), room_version)
        except EventValidationError as e:
            raise invalid_param(f"Not a valid event: {e}") from None
        if (
            event.event_id != event_id
            or event.room_id != room_id
            or event.type != MEMBER
            or event.membership != membership
            or event.state_key != event.sender
            or server_of(event.sender) != origin
        ):
            raise invalid_param(f"Not a {membership} event of a user of {origin} for this room")
        authoriser = event.content.get("join_authorised_via_users_server")
        if membership == "join" and isinstance(authoriser, str) and self.is_mine(authoriser):
            # We vouch for the join: our signature must be on it before anyone checks it.
            sign_event(received, self.server_name, self.signing_key, room_version)
        checked = await self.events.verify_pdu(received, room_version)
        if isinstance(checked, PduOutcome):
            raise invalid_param(f"The event fails the signature checks: {checked.reason}")
        outcome = await self.events.on_receive_pdu(
            origin, room_id, serialize_for_federation(checked)
        )
        if outcome.status in ("rejected", "soft_failed", "dropped"):
            raise forbidden(f"The {membership} is not allowed: {outcome.reason or outcome.status}")
        stored = await self.store.get_event(event_id)
        if stored is None or stored.rejected_reason is not None:
            raise forbidden(f"The {membership} is not allowed")
        if outcome.status == "persisted" and self.forward is not None:
            self.forward(room_id, [stored])
        return stored

    async def send_join_answer(self, event: Event, omit_members: bool) -> JsonDict:
        """The state before the join and its auth chain (``send_join`` v2)."""
        state_ids = await self.store.get_state_ids_before_event(event) or {}
        state_events = await self.store.get_events(state_ids.values())
        state = list(state_events.values())
        servers = sorted(
            {
                server_of(e.state_key)
                for e in state
                if e.type == MEMBER and e.membership == "join" and e.state_key
            }
        )
        if omit_members:
            heroes = self._heroes(state)
            state = [e for e in state if e.type != MEMBER or e.state_key in heroes]
        chain = await self._auth_chain([*state, event])
        if omit_members:
            in_state = {e.event_id for e in state}
            chain = [e for e in chain if e.event_id not in in_state]
        now = self.now_ms()
        answer: JsonDict = {
            "state": [serialize_for_federation(e, now) for e in state],
            "auth_chain": [serialize_for_federation(e, now) for e in chain],
            "event": serialize_for_federation(event, now),
            "members_omitted": omit_members,
            "servers_in_room": servers,
        }
        return answer

    def _heroes(self, state: Sequence[Event]) -> set[str]:
        """Whose membership a client needs to name a room without a name or alias."""
        if any(e.type in ("m.room.name", "m.room.canonical_alias") for e in state):
            return set()
        members = sorted(
            (e for e in state if e.type == MEMBER and e.membership in ("join", "invite")),
            key=lambda e: e.depth,
        )
        return {str(e.state_key) for e in members[:5]}

    async def _auth_chain(self, events: Sequence[Event]) -> list[Event]:
        seen: dict[str, Event] = {}
        frontier = {a for e in events for a in e.auth_event_ids}
        while frontier:
            found = await self.store.get_events(list(frontier))
            seen.update(found)
            frontier = {a for e in found.values() for a in e.auth_event_ids if a not in seen}
        return sorted(seen.values(), key=lambda e: e.depth)

    async def knock_room_state(self, room_id: str) -> list[JsonDict]:
        head = await self.store.get_room_head(room_id)
        if head is None:
            return []
        ids = stripped_state_ids(head.state)
        found = await self.store.get_events(ids)
        now = self.now_ms()
        return [serialize_for_federation(found[i], now) for i in ids if i in found]

    # --- invites of our users ---------------------------------------------------------

    async def on_invite(self, origin: str, room_id: str, event_id: str, body: JsonDict) -> JsonDict:
        """``/invite`` v2: check, co-sign and remember an invite of one of our users."""
        version_id = body.get("room_version")
        room_version = KNOWN_ROOM_VERSIONS.get(version_id) if isinstance(version_id, str) else None
        if room_version is None:
            raise MatrixError(
                400,
                "M_INCOMPATIBLE_ROOM_VERSION",
                f"This server does not support room version {version_id}",
                room_version=version_id if isinstance(version_id, str) else "",
            )
        try:
            pdu = _received(body.get("event"))
            event = make_event(dict(pdu), room_version)
        except EventValidationError as e:
            raise invalid_param(f"Not a valid invite event: {e}") from None
        if (
            event.event_id != event_id
            or event.room_id != room_id
            or event.type != MEMBER
            or event.membership != "invite"
            or server_of(event.sender) != origin
            or event.state_key is None
            or not self.is_mine(event.state_key)
        ):
            raise invalid_param("Not an invite of a user of this server by a user of the origin")
        room_state = body.get("invite_room_state", [])
        if not isinstance(room_state, list):
            raise invalid_param("invite_room_state must be a list")
        stripped = strip_state(room_state)
        if room_version.room_id_is_create_event_hash:
            # v12: the room ID is the create event's hash; the invite must show it.
            creates = [
                p for p in room_state if isinstance(p, dict) and p.get("type") == "m.room.create"
            ]
            if not creates or _room_id_of_create(creates[0], room_version) != room_id:
                raise invalid_param("invite_room_state lacks the room's create event")
        checked = await self.events.verify_pdu(pdu, room_version)
        if isinstance(checked, PduOutcome):
            raise invalid_param(f"The invite fails the signature checks: {checked.reason}")
        if await self._refuses(room_id, event.state_key):
            raise forbidden("The user is already in the room")
        sign_event(pdu, self.server_name, self.signing_key, room_version)
        signed = make_event(dict(pdu), room_version)
        if not await self.is_resident(room_id):
            # The invite will not come by /send: remember it (with its room's look) now.
            stored = make_event({**pdu, "unsigned": {"invite_room_state": stripped}}, room_version)
            await self._persist_out_of_room(stored, room_version, _creator_of(stripped))
        return {"event": serialize_for_federation(signed)}

    async def _refuses(self, room_id: str, user_id: str) -> bool:
        head = await self.store.get_room_head(room_id)
        current_id = head.state.get((MEMBER, user_id)) if head is not None else None
        current = await self.store.get_event(current_id) if current_id else None
        return current is not None and current.membership in ("join", "ban")


def _room_id_of_create(pdu: Any, room_version: RoomVersion) -> str | None:
    try:
        return room_id_from_create_event(pdu, room_version)
    except EventValidationError:
        return None
