-- Which migrations this database has had. prepare_database reads it to know what to apply
-- and to refuse a database written by a newer Hearth.
CREATE TABLE schema_version (
    version INTEGER NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    -- milliseconds since the Unix epoch, like every timestamp Matrix deals in
    applied_ts BIGINT NOT NULL
);
