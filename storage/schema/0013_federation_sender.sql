-- What the federation sender knows of each destination, so that nothing is lost when a
-- server is unreachable or Hearth restarts: the newest event each room queued for it, and
-- how far its transactions have succeeded.
CREATE TABLE federation_destinations (
    destination TEXT NOT NULL PRIMARY KEY,
    -- the highest stream ordering a successful transaction to it carried
    last_successful_stream_ordering BIGINT NOT NULL DEFAULT 0,
    retry_last_ts BIGINT NOT NULL DEFAULT 0,
    retry_interval_ms BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE federation_destination_rooms (
    destination TEXT NOT NULL,
    room_id TEXT NOT NULL,
    -- the newest of our events in the room that the destination should have
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (destination, room_id)
);
