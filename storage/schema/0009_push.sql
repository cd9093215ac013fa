-- Push rules (each user's own, and their changes to the server-default ones) and the
-- push actions computed for each event, from which unread counts and /notifications come.

-- A user's own rules. priority orders them within a kind: higher is more important.
CREATE TABLE push_rules (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    priority BIGINT NOT NULL,
    conditions TEXT NOT NULL,
    pattern TEXT,
    actions TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- A user's changes to a server-default rule; NULL keeps the default's value.
CREATE TABLE push_rule_default_changes (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    enabled BOOLEAN,
    actions TEXT,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- The "push_rules" stream: the position of each user's latest change.
CREATE TABLE push_rules_stream (
    user_id TEXT NOT NULL PRIMARY KEY,
    stream_id BIGINT NOT NULL
);

-- What each event means to each local member it notified or highlighted.
CREATE TABLE event_push_actions (
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    -- the thread root's event ID, or 'main' for the main timeline
    thread_id TEXT NOT NULL,
    actions TEXT NOT NULL,
    notif INTEGER NOT NULL,
    highlight INTEGER NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX event_push_actions_room ON event_push_actions (user_id, room_id, stream_ordering);
CREATE INDEX event_push_actions_stream ON event_push_actions (user_id, stream_ordering);
CREATE INDEX event_push_actions_event ON event_push_actions (event_id);
