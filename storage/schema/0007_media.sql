-- The media repository: uploaded files (their bytes live on disk under media_store_path),
-- cached copies of other servers' media, and the thumbnails of both.

CREATE TABLE local_media (
    media_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    -- NULL until the content arrives (POST /create reserves the ID first)
    media_type TEXT,
    media_length BIGINT,
    upload_name TEXT,
    sha256 TEXT,
    -- NULL when never downloaded; retention then goes by created_ts
    last_access_ts BIGINT,
    quarantined_by TEXT,
    safe_from_quarantine BOOLEAN NOT NULL DEFAULT FALSE,
    -- created while enable_authenticated_media was on: never served by the legacy endpoints
    authenticated BOOLEAN NOT NULL,
    -- the URL this file was fetched from for a URL preview, if it was
    url_cache TEXT
);
CREATE INDEX local_media_user_created ON local_media (user_id, created_ts);
CREATE INDEX local_media_created ON local_media (created_ts);
CREATE INDEX local_media_sha256 ON local_media (sha256);

CREATE TABLE local_media_thumbnails (
    media_id TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    method TEXT NOT NULL,
    type TEXT NOT NULL,
    length BIGINT NOT NULL,
    PRIMARY KEY (media_id, width, height, method, type)
);

CREATE TABLE remote_media_cache (
    media_origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    media_type TEXT,
    media_length BIGINT,
    upload_name TEXT,
    created_ts BIGINT NOT NULL,
    last_access_ts BIGINT,
    -- our own name for the file on disk: never the remote server's media ID
    filesystem_id TEXT NOT NULL,
    quarantined_by TEXT,
    authenticated BOOLEAN NOT NULL,
    sha256 TEXT,
    PRIMARY KEY (media_origin, media_id)
);
CREATE INDEX remote_media_cache_access ON remote_media_cache (last_access_ts);

CREATE TABLE remote_media_thumbnails (
    media_origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    method TEXT NOT NULL,
    type TEXT NOT NULL,
    length BIGINT NOT NULL,
    PRIMARY KEY (media_origin, media_id, width, height, method, type)
);
