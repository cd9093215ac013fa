-- Rooms, their events (the DAG), and room state.

CREATE TABLE rooms (
    room_id TEXT NOT NULL PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT NOT NULL,
    -- published in this server's room directory
    is_public BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts BIGINT NOT NULL
);

-- Every event we hold. stream_ordering is this server's order of arrival (the stream
-- token's room position); depth is the DAG's topological order.
CREATE TABLE events (
    stream_ordering BIGINT NOT NULL PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    depth BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    received_ts BIGINT NOT NULL,
    outlier BOOLEAN NOT NULL DEFAULT FALSE,
    rejected_reason TEXT,
    -- the PDU as signed (federation format, without `unsigned`)
    json TEXT NOT NULL,
    -- server-local facts: txn_id, token_id, soft_failed...
    internal_metadata TEXT NOT NULL DEFAULT '{}',
    -- the room state after this event (before it, for a non-state event: the same)
    state_group BIGINT
);
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_room_topological ON events (room_id, depth, stream_ordering);
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts);

CREATE TABLE event_edges (
    event_id TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

CREATE TABLE event_auth (
    event_id TEXT NOT NULL,
    auth_id TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_id)
);

-- The events of a room that no other event points to yet: the next event's prev_events.
CREATE TABLE event_forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- Room state as snapshots stored as small deltas: a group is its prev_group plus its rows.
CREATE TABLE state_groups (
    id BIGINT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    prev_group BIGINT,
    -- how many groups deep the delta chain is; a full snapshot is 0
    chain_length INTEGER NOT NULL
);
CREATE TABLE state_group_entries (
    state_group BIGINT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    -- NULL: the key is absent from this group though present in prev_group
    event_id TEXT,
    PRIMARY KEY (state_group, type, state_key)
);

-- The room's current state, for the queries that only need "now".
CREATE TABLE current_state_events (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- for m.room.member rows
    membership TEXT,
    PRIMARY KEY (room_id, type, state_key)
);
CREATE INDEX current_state_members ON current_state_events (state_key, membership)
    WHERE type = 'm.room.member';

-- Every membership event, for history visibility and "members at" queries.
CREATE TABLE room_memberships (
    event_id TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    membership TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    forgotten BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX room_memberships_user ON room_memberships (user_id, room_id, stream_ordering);

CREATE TABLE redactions (
    event_id TEXT NOT NULL PRIMARY KEY,
    redacts TEXT NOT NULL,
    received_ts BIGINT NOT NULL
);
CREATE INDEX redactions_redacts ON redactions (redacts);

-- Idempotent sends: the event a device's transaction ID created (spec: scoped to the device).
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    -- '' when the requester has no device (e.g. an application service)
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- sha256 of the request (path and body), to tell a retry from a reuse
    request_hash TEXT NOT NULL,
    inserted_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
