-- Accounts, devices, access and refresh tokens, profiles, registration tokens.

CREATE TABLE users (
    user_id TEXT NOT NULL PRIMARY KEY,
    -- bcrypt, in Synapse's scheme (so an imported Synapse hash verifies); NULL: no password
    -- (guests, deactivated accounts)
    password_hash TEXT,
    creation_ts BIGINT NOT NULL,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    is_guest BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated BOOLEAN NOT NULL DEFAULT FALSE,
    -- NULL for a normal user; 'support' or 'bot' as Synapse's user types
    user_type TEXT
);

CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    -- written in batches, not on every request
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    last_seen_user_agent TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored as the SHA-256 of the token, never the token itself: a copy of the
-- database (a backup, a dump) then holds no usable credentials. Tokens are long random
-- strings, so an unsalted fast hash is enough.
CREATE TABLE access_tokens (
    id BIGINT NOT NULL PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT,
    created_ts BIGINT NOT NULL,
    -- NULL: never expires
    valid_until_ms BIGINT,
    -- the refresh token this access token was issued with, if any
    refresh_token_id BIGINT,
    -- set the first time the token is used: from then on the refresh token that preceded
    -- its own refresh token is no longer accepted
    used BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX access_tokens_user_device ON access_tokens (user_id, device_id);
CREATE INDEX access_tokens_refresh_token ON access_tokens (refresh_token_id);

CREATE TABLE refresh_tokens (
    id BIGINT NOT NULL PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    -- NULL: never expires
    expiry_ts BIGINT,
    -- the end of the whole session (session_lifetime), however often it is refreshed
    ultimate_session_expiry_ts BIGINT,
    -- the token this one was exchanged for
    next_token_id BIGINT
);
CREATE INDEX refresh_tokens_user_device ON refresh_tokens (user_id, device_id);
CREATE INDEX refresh_tokens_next ON refresh_tokens (next_token_id);

CREATE TABLE profiles (
    user_id TEXT NOT NULL PRIMARY KEY,
    displayname TEXT,
    avatar_url TEXT,
    -- every other profile field (m.tz, custom fields) as one JSON object
    fields TEXT NOT NULL DEFAULT '{}'
);

-- Synapse's registration tokens. `pending` (sessions that validated a token but have not
-- registered yet) lives in memory with the user-interactive auth sessions themselves.
CREATE TABLE registration_tokens (
    token TEXT NOT NULL PRIMARY KEY,
    -- NULL: unlimited
    uses_allowed INTEGER,
    completed INTEGER NOT NULL DEFAULT 0,
    -- NULL: never expires
    expiry_time BIGINT
);
