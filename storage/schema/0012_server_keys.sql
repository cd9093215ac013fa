-- Other servers' signing keys, fetched directly or through notaries. One row per key; the
-- signed key document it came in is kept with it, since that is what we serve as a notary.

CREATE TABLE server_signature_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    -- unpadded base64 Ed25519 public key
    verify_key TEXT NOT NULL,
    -- until when signatures by this key count: the lesser of the document's valid_until_ts
    -- and seven days after it was fetched; an old key's expired_ts
    valid_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL,
    -- the server we had the document from: the key's owner, or a notary
    from_server TEXT NOT NULL,
    -- the key document as its owner signed it (other servers' signatures removed)
    key_json TEXT NOT NULL,
    -- the document's own valid_until_ts, uncapped
    document_valid_until_ts BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);
