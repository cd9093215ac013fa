-- The federation sender asks which memberships of a room changed after one of our
-- events (to send the event only to the servers that were in the room at it).
CREATE INDEX room_memberships_room_stream ON room_memberships (room_id, stream_ordering);
