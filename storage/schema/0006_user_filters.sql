-- Filters uploaded by clients (POST /user/{userId}/filter), numbered per user.

CREATE TABLE user_filters (
    user_id TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    -- the filter as canonical JSON, so an identical upload finds the existing ID
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
