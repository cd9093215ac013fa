-- Event relationships and threads (spec: "Forming relationships between events",
-- "Threading").

-- One row per non-rejected event whose content has a valid m.relates_to, written in the
-- event's own transaction; a redaction of the child deletes its row (the relationship is
-- broken). The child's room, sender, type, DAG position and timestamp are copied from the
-- event (they never change) so that paging and aggregating read this table alone.
CREATE TABLE event_relations (
    event_id TEXT NOT NULL PRIMARY KEY,
    relates_to_id TEXT NOT NULL,
    relation_type TEXT NOT NULL,
    -- m.annotation's key
    aggregation_key TEXT,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    depth BIGINT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL
);
CREATE INDEX event_relations_parent
    ON event_relations (relates_to_id, relation_type, depth, stream_ordering);

-- Each thread of a room with its latest reply (the greatest (depth, stream_ordering)), so
-- that /threads pages through a room's threads by latest activity without a scan.
CREATE TABLE threads (
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    latest_event_id TEXT NOT NULL,
    depth BIGINT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (room_id, thread_id)
);
CREATE INDEX threads_room_latest ON threads (room_id, depth, stream_ordering);
CREATE INDEX threads_thread ON threads (thread_id);
CREATE INDEX threads_latest_event ON threads (latest_event_id);
