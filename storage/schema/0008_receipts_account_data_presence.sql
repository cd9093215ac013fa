-- Read receipts, account data (global and per room, room tags included) and presence:
-- the per-user and ephemeral streams /sync serves besides room events. Each row carries
-- the stream_id of its last change, so an incremental /sync reads "stream_id > since".

-- The latest receipt per (room, type, user, thread). thread_id is '' for an unthreaded
-- receipt (not NULL, so the primary key treats unthreaded receipts as one slot).
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- the stream ordering of event_id: a receipt never moves back to an older event
    event_stream_ordering BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_room_stream ON receipts (room_id, stream_id);
CREATE INDEX receipts_user ON receipts (user_id, room_id);

-- room_id is '' for global account data. content is the JSON object as stored.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    account_data_type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, account_data_type)
);
CREATE INDEX account_data_user_stream ON account_data (user_id, stream_id);

-- The presence of local users. last_active_ts is 0 when never active.
CREATE TABLE presence (
    user_id TEXT NOT NULL PRIMARY KEY,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    currently_active BOOLEAN NOT NULL,
    stream_id BIGINT NOT NULL
);
CREATE INDEX presence_stream ON presence (stream_id);
