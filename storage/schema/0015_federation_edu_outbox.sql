-- EDUs that must reach another server even if Hearth restarts before they are sent
-- (to-device messages carry end-to-end encryption keys). Deleted once delivered.
CREATE TABLE federation_edu_outbox (
    id BIGINT NOT NULL PRIMARY KEY,
    destination TEXT NOT NULL,
    edu_type TEXT NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX federation_edu_outbox_destination ON federation_edu_outbox (destination, id);
