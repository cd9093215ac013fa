"""Relations and threads: /relations, /threads and the bundled aggregations.

``bundle_aggregations`` is what the event serializer asks for every batch of events it
sends to a client: the ``unsigned.m.relations`` of each (spec: "Aggregations of child
events"), worked out for the whole batch in a handful of queries:

- ``m.thread`` for an event with threaded replies (one that does not itself relate to
  another event): the latest reply (serialized, with its own aggregations), the number of
  replies and whether the requester started or replied to the thread;
- ``m.replace``: the most recent valid edit (same sender, type and room; by
  ``origin_server_ts`` then event ID), serialized as a normal event, and none for a
  redacted event. The edited event's content is left as it is (spec v1.7);
- ``m.reference``: the IDs of the events referencing it.

Annotations are not aggregated (spec), state events get no aggregations, and neither do
edits and annotations themselves (as Synapse). Replies from ignored users count for
nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from homeserver.errors import MatrixError, not_found
from homeserver.events.model import Event, JsonDict
from homeserver.events.redaction import prune_event
from homeserver.events.relations import (
    ANNOTATION,
    REFERENCE,
    REPLACE,
    THREAD,
    relation_from_content,
)
from homeserver.handlers.serialize import EventSerializer
from homeserver.handlers.visibility import check_room_access, filter_events_for_user
from homeserver.streams import RoomStreamToken, parse_room_token
from homeserver.types import Requester
from storage.events import EventStore
from storage.relations import RECURSION_DEPTH, Position, RelatedEvent, RelationsStore
from storage.room_history import RoomHistoryStore

# /relations: Synapse's default page size and the cap every paginated endpoint shares.
RELATIONS_DEFAULT_LIMIT = 5
RELATIONS_MAX_LIMIT = 1000
# /threads: each root carries its aggregations, so pages stay small.
THREADS_DEFAULT_LIMIT = 5
THREADS_MAX_LIMIT = 100
# Synapse's bound on an annotation's key.
MAX_ANNOTATION_KEY_LENGTH = 500

IgnoredUsersSource = Callable[[str], Awaitable[frozenset[str]]]


async def _no_ignored_users(user_id: str) -> frozenset[str]:
    return frozenset()


def _token(position: Position) -> str:
    return RoomStreamToken(position[0], position[1]).to_string()


class RelationsHandler:
    def __init__(
        self,
        store: EventStore,
        history: RoomHistoryStore,
        relations: RelationsStore,
        serializer: EventSerializer,
        ignored_users: IgnoredUsersSource | None = None,
    ) -> None:
        self.store = store
        self.history = history
        self.relations = relations
        self.serializer = serializer
        self._ignored_users = ignored_users or _no_ignored_users

    def set_ignored_users(self, source: IgnoredUsersSource) -> None:
        """Where the users a user ignores come from (m.ignored_user_list)."""
        self._ignored_users = source

    # --- sending -----------------------------------------------------------------------

    async def validate_new_relation(
        self, room_id: str, event_type: str, sender: str, content: JsonDict
    ) -> None:
        """400 if a client's new event declares a relationship that cannot be (as
        Synapse): a parent in another room, a parent nobody knows, an annotation without
        a key or repeating the sender's own, a thread off an event that relates to
        another (spec: "Validation of m.thread relationships", M_UNKNOWN)."""
        relates_to = content.get("m.relates_to")
        if not isinstance(relates_to, dict):
            return
        if relates_to.get("rel_type") == ANNOTATION and not isinstance(relates_to.get("key"), str):
            raise MatrixError(400, "M_UNKNOWN", "Missing aggregation key")
        relation = relation_from_content(content)
        if relation is None:
            return
        parent = await self.store.get_event(relation.parent_id)
        if parent is not None:
            if parent.room_id != room_id:
                raise MatrixError(400, "M_UNKNOWN", "Relations must be in the same room")
        elif not await self.relations.is_relation_target(relation.parent_id):
            # The client cannot know of it, unless others already relate to it.
            raise MatrixError(400, "M_UNKNOWN", "Can't send relation to unknown event")
        if relation.rel_type == ANNOTATION:
            assert relation.key is not None
            if len(relation.key) > MAX_ANNOTATION_KEY_LENGTH:
                raise MatrixError(400, "M_UNKNOWN", "Aggregation key is too long")
            if await self.relations.has_annotated(
                relation.parent_id, event_type, relation.key, sender
            ):
                raise MatrixError(400, "M_DUPLICATE_ANNOTATION", "Can't send same reaction twice")
        elif relation.rel_type == THREAD and parent is not None:
            if relation_from_content(parent.content) is not None:
                raise MatrixError(
                    400, "M_UNKNOWN", "Cannot start threads from an event with a relation"
                )

    # --- /relations --------------------------------------------------------------------

    async def _position(self, room_id: str, text: str, param: str) -> Position:
        token = parse_room_token(text, param)
        if token.topological is not None:
            return token.position
        # A /sync token: the DAG position matching its stream position (as /messages).
        return await self.history.get_topological_position(room_id, token.stream)

    async def get_relations(
        self,
        requester: Requester,
        room_id: str,
        event_id: str,
        *,
        rel_type: str | None,
        event_type: str | None,
        from_token: str | None,
        to_token: str | None,
        limit: int,
        backwards: bool,
        recurse: bool,
    ) -> JsonDict:
        user_id = requester.user_id
        # Members, departed members and peekers of world-readable rooms (as Synapse).
        await check_room_access(self.store, self.history, room_id, user_id)
        parent = await self.store.get_event(event_id)
        if (
            parent is None
            or parent.room_id != room_id
            or parent.internal_metadata.get("outlier")
            or parent.rejected_reason is not None
            or not await filter_events_for_user(self.history, user_id, [parent])
        ):
            # The spec: the same 404 whether unknown or not visible to this user.
            raise not_found("Event not found.")
        from_position = await self._position(room_id, from_token, "from") if from_token else None
        to_position = await self._position(room_id, to_token, "to") if to_token else None

        result: JsonDict = {"chunk": []}
        if from_token:
            result["prev_batch"] = from_token
        if recurse:
            result["recursion_depth"] = RECURSION_DEPTH
        if limit == 0:
            return result
        # Edits of a redacted event would leak its content (as Synapse).
        redacted = bool(await self.store.get_redacting_events([event_id]))
        children, more = await self.relations.get_children(
            event_id,
            room_id,
            rel_type=rel_type,
            event_type=event_type,
            from_position=from_position,
            to_position=to_position,
            backwards=backwards,
            limit=limit,
            recurse=recurse,
            exclude_rel_types=(REPLACE,) if redacted else (),
        )
        if more and children:
            last = children[-1].position
            # A backwards token sits just after the event it names: resume below ``last``.
            result["next_batch"] = _token((last[0], last[1] - 1) if backwards else last)
        fetched = await self.store.get_events([child.event_id for child in children])
        events = [
            fetched[child.event_id]
            for child in children
            if child.event_id in fetched and fetched[child.event_id].room_id == room_id
        ]
        visible = await filter_events_for_user(self.history, user_id, events)
        result["chunk"] = await self.serializer.serialize_events(visible, requester=requester)
        return result

    # --- /threads ----------------------------------------------------------------------

    async def get_threads(
        self,
        requester: Requester,
        room_id: str,
        *,
        participated_only: bool,
        from_token: str | None,
        limit: int,
    ) -> JsonDict:
        user_id = requester.user_id
        await check_room_access(self.store, self.history, room_id, user_id)
        before = await self._position(room_id, from_token, "from") if from_token else None
        roots, more = await self.relations.get_threads(
            room_id,
            before=before,
            limit=limit,
            participant=user_id if participated_only else None,
        )
        fetched = await self.store.get_events([root.thread_id for root in roots])
        events = [
            fetched[root.thread_id]
            for root in roots
            if root.thread_id in fetched and fetched[root.thread_id].room_id == room_id
        ]
        visible = await filter_events_for_user(self.history, user_id, events)
        ignored = await self._ignored_users(user_id)
        if ignored:
            # The spec: an ignored user's thread root is returned redacted.
            visible = [prune_event(e) if e.sender in ignored else e for e in visible]
        result: JsonDict = {
            "chunk": await self.serializer.serialize_events(visible, requester=requester)
        }
        if more and roots:
            result["next_batch"] = _token(roots[-1].position)
        return result

    # --- bundled aggregations ----------------------------------------------------------

    async def bundle_aggregations(
        self,
        events: Sequence[Event],
        user_id: str,
        *,
        requester: Requester | None = None,
        include_room_id: bool = True,
    ) -> dict[str, JsonDict]:
        """The ``unsigned.m.relations`` of each of ``events`` that has any, by event ID,
        as ``user_id`` is to see them. Nested events (a thread's latest reply, an edit)
        are serialized for ``requester`` with ``include_room_id`` like the events."""
        parents: dict[str, Event] = {}
        thread_roots: list[str] = []
        for event in events:
            if event.is_state() or event.event_id in parents:
                continue
            relation = relation_from_content(event.content)
            if relation is not None and relation.rel_type in (ANNOTATION, REPLACE):
                continue
            parents[event.event_id] = event
            # A thread cannot start from an event that relates to another.
            if relation is None:
                thread_roots.append(event.event_id)
        if not parents:
            return {}
        ignored = await self._ignored_users(user_id)

        threads = await self._thread_summaries(parents, thread_roots, user_id, ignored)
        # The latest replies get their edits and references bundled too.
        latest_events = {latest.event_id: latest for latest, _, _ in threads.values()}
        targets = {**latest_events, **parents}
        children = await self.relations.get_children_of(targets, (REPLACE, REFERENCE))

        references: dict[str, list[JsonDict]] = {}
        edit_candidates: dict[str, list[RelatedEvent]] = {}
        for child in children:
            parent = targets[child.parent_id]
            if child.room_id != parent.room_id or child.sender in ignored:
                continue
            if child.rel_type == REFERENCE:
                references.setdefault(parent.event_id, []).append({"event_id": child.event_id})
            elif child.sender == parent.sender and child.type == parent.type:
                edit_candidates.setdefault(parent.event_id, []).append(child)
        edits = await self._latest_edits(targets, edit_candidates)

        serialized_edits: dict[str, JsonDict] = {}
        if edits:
            ordered = list(edits.values())
            serialized = await self.serializer.serialize_events(
                ordered, requester=requester, include_room_id=include_room_id, aggregations={}
            )
            serialized_edits = {e.event_id: s for e, s in zip(ordered, serialized, strict=True)}

        bundles: dict[str, JsonDict] = {}
        for event_id in targets:
            bundle: JsonDict = {}
            edit = edits.get(event_id)
            if edit is not None:
                bundle[REPLACE] = serialized_edits[edit.event_id]
            if event_id in references:
                bundle[REFERENCE] = {"chunk": references[event_id]}
            if bundle:
                bundles[event_id] = bundle

        if threads:
            ordered = list(latest_events.values())
            serialized = await self.serializer.serialize_events(
                ordered,
                requester=requester,
                include_room_id=include_room_id,
                aggregations={
                    e.event_id: bundles[e.event_id] for e in ordered if e.event_id in bundles
                },
            )
            serialized_latest = {e.event_id: s for e, s in zip(ordered, serialized, strict=True)}
            for root_id, (latest, count, participated) in threads.items():
                bundles.setdefault(root_id, {})["m.thread"] = {
                    "latest_event": serialized_latest[latest.event_id],
                    "count": count,
                    "current_user_participated": participated,
                }
        return {event_id: bundles[event_id] for event_id in parents if event_id in bundles}

    async def _thread_summaries(
        self,
        parents: Mapping[str, Event],
        thread_roots: Sequence[str],
        user_id: str,
        ignored: frozenset[str],
    ) -> dict[str, tuple[Event, int, bool]]:
        """(latest reply, reply count, requester participated) of each thread root."""
        if not thread_roots:
            return {}
        counts: dict[str, int] = {}
        participated: dict[str, bool] = {}
        for root_id, room_id, sender, count in await self.relations.get_thread_participants(
            thread_roots
        ):
            root = parents[root_id]
            if room_id != root.room_id or sender in ignored:
                continue
            counts[root_id] = counts.get(root_id, 0) + count
            if sender == user_id:
                participated[root_id] = True
        if not counts:
            return {}
        latest_ids = await self.relations.get_thread_latest(counts)
        chosen = {
            root_id: latest_ids[(parents[root_id].room_id, root_id)]
            for root_id in counts
            if (parents[root_id].room_id, root_id) in latest_ids
        }
        fetched = await self.store.get_events(set(chosen.values()))
        summaries: dict[str, tuple[Event, int, bool]] = {}
        for root_id, latest_id in chosen.items():
            root = parents[root_id]
            latest = fetched.get(latest_id)
            if latest is not None and latest.sender in ignored:
                # Rare: look past the ignored users' replies, one thread at a time.
                other = await self.relations.get_latest_reply_excluding(
                    root.room_id, root_id, ignored
                )
                latest = await self.store.get_event(other) if other is not None else None
            if latest is None:
                continue
            summaries[root_id] = (
                latest,
                counts[root_id],
                root.sender == user_id or participated.get(root_id, False),
            )
        return summaries

    async def _latest_edits(
        self, targets: Mapping[str, Event], candidates: Mapping[str, Iterable[RelatedEvent]]
    ) -> dict[str, Event]:
        """The most recent valid edit of each event that has one (spec: "Validity of
        replacement events"); none for a redacted event."""
        if not candidates:
            return {}
        redacted = await self.store.get_redacting_events(list(candidates))
        wanted = {
            parent_id: sorted(edits, key=lambda e: (e.origin_server_ts, e.event_id), reverse=True)
            for parent_id, edits in candidates.items()
            if parent_id not in redacted and not targets[parent_id].is_state()
        }
        fetched = await self.store.get_events(
            {edit.event_id for edits in wanted.values() for edit in edits}
        )
        chosen: dict[str, Event] = {}
        for parent_id, edits in wanted.items():
            for edit in edits:
                event = fetched.get(edit.event_id)
                if event is not None and _is_valid_edit(event):
                    chosen[parent_id] = event
                    break
        return chosen


def _is_valid_edit(edit: Event) -> bool:
    if edit.is_state() or edit.rejected_reason is not None:
        return False
    # An encrypted edit carries m.new_content inside its ciphertext.
    return edit.type == "m.room.encrypted" or isinstance(edit.content.get("m.new_content"), dict)
