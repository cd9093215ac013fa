-- Transaction IDs are scoped to the device and the request path (client-server API,
-- "Transaction identifiers"): the same ID sent to another room, event type or endpoint
-- is a new request, not a retransmission. `scope` is the path without the ID.

CREATE TABLE event_txn_ids_scoped (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    -- e.g. "send/{roomId}/{eventType}"; '' for rows from before scoping
    scope TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    inserted_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, scope, txn_id)
);
INSERT INTO event_txn_ids_scoped
    (user_id, device_id, scope, txn_id, room_id, event_id, request_hash, inserted_ts)
    SELECT user_id, device_id, '', txn_id, room_id, event_id, request_hash, inserted_ts
    FROM event_txn_ids;
DROP TABLE event_txn_ids;
ALTER TABLE event_txn_ids_scoped RENAME TO event_txn_ids;
