-- Other servers' users' device lists and cross-signing keys, as their servers told us
-- (m.device_list_update and m.signing_key_update EDUs, GET /user/devices resyncs). The
-- position is the stream_id of the last update applied: an update whose prev_id does not
-- name it reveals a gap, and the list is fetched whole again.

CREATE TABLE remote_device_list_positions (
    user_id TEXT NOT NULL PRIMARY KEY,
    stream_id BIGINT NOT NULL
);

CREATE TABLE remote_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    -- the device's signed keys; NULL for a device that has uploaded none
    key_json TEXT,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE remote_cross_signing_keys (
    user_id TEXT NOT NULL,
    -- "master" or "self_signing" (a user-signing key never leaves its server)
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);
