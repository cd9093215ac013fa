-- Room aliases this server answers for (#localpart:this_server -> room).

CREATE TABLE room_aliases (
    room_alias TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    -- the user who created the alias (may delete it whatever their power); NULL if unknown
    creator TEXT,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- For the public room list: order by joined members, then room ID.
CREATE INDEX rooms_public ON rooms (is_public);
