"""Server keys between Hearth servers over real TLS: direct fetches, notaries (as client and
as server), verification of the signatures on key documents, and the database cache."""

from __future__ import annotations

import json
from typing import Any

import pytest
from signedjson.key import encode_verify_key_base64, get_verify_key
from signedjson.sign import verify_signed_json
from unpaddedbase64 import encode_base64

from federation.client import HttpResponseError
from federation.keyring import MAX_KEY_VALIDITY_MS, Keyring
from homeserver.server_keys import key_id
from storage.server_keys import ServerKeyStore
from tests.integration import federation_helpers
from tests.integration.federation_helpers import FederatedServer, Federation

db_configs = federation_helpers.db_configs
federation = federation_helpers.federation


def _key_of(server: FederatedServer) -> tuple[str, str]:
    signing_key = server.homeserver.server_keys.signing_key
    return key_id(signing_key), encode_verify_key_base64(get_verify_key(signing_key))


def _fetch(server: FederatedServer, requests: dict[str, set[str]], min_valid: int = 0) -> Any:
    return server.run_sync(server.homeserver.keyring.get_verify_keys(requests, min_valid))


def test_direct_fetch_verifies_caps_and_stores(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    b_key_id, b_key = _key_of(b)
    now = a.homeserver.now_ms()

    keys = _fetch(a, {b.server_name: {b_key_id}}, now)

    found = keys[(b.server_name, b_key_id)]
    assert encode_base64(found.verify_key.encode()) == b_key
    # B publishes a day of validity; never more than seven days is believed.
    assert now < found.valid_until_ts <= now + MAX_KEY_VALIDITY_MS + 60_000

    # In the database: a keyring with no way to fetch still knows the key.
    offline = Keyring(
        a.homeserver.server_keys,
        ServerKeyStore(a.homeserver.database),  # type: ignore[arg-type]
        None,
        [],
        a.homeserver.now_ms,
    )
    stored = a.run_sync(offline.get_verify_keys({b.server_name: {b_key_id}}))
    assert encode_base64(stored[(b.server_name, b_key_id)].verify_key.encode()) == b_key


def test_unknown_key_id_is_absent(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    keys = _fetch(a, {b.server_name: {"ed25519:nope"}})
    assert keys == {}


def test_own_keys_need_no_fetch(federation: Federation) -> None:
    a = federation.start("a")
    a_key_id, a_key = _key_of(a)
    keys = _fetch(a, {a.server_name: set()})
    assert encode_base64(keys[(a.server_name, a_key_id)].verify_key.encode()) == a_key


def test_notary_serves_signed_keys_over_http(federation: Federation) -> None:
    notary = federation.start("notary")
    origin = federation.start("origin")
    origin_key_id, origin_key = _key_of(origin)
    notary_key = get_verify_key(notary.homeserver.server_keys.signing_key)
    origin_verify = get_verify_key(origin.homeserver.server_keys.signing_key)

    result = notary.https("GET", f"/_matrix/key/v2/query/{origin.server_name}")
    assert result.status == 200, result.body
    [document] = result.json()["server_keys"]
    assert document["server_name"] == origin.server_name
    assert document["verify_keys"][origin_key_id]["key"] == origin_key
    verify_signed_json(document, origin.server_name, origin_verify)
    verify_signed_json(document, notary.server_name, notary_key)

    # The batch form, with a minimum validity the document already meets.
    now = notary.homeserver.now_ms()
    body = {
        "server_keys": {
            origin.server_name: {origin_key_id: {"minimum_valid_until_ts": now}},
            notary.server_name: {},
        }
    }
    result = notary.https("POST", "/_matrix/key/v2/query", body=body)
    assert result.status == 200, result.body
    documents = {d["server_name"]: d for d in result.json()["server_keys"]}
    assert set(documents) == {origin.server_name, notary.server_name}
    verify_signed_json(documents[origin.server_name], notary.server_name, notary_key)
    verify_signed_json(documents[notary.server_name], notary.server_name, notary_key)


def test_notary_keeps_serving_cached_keys_when_origin_is_gone(federation: Federation) -> None:
    notary = federation.start("notary")
    origin = federation.start("origin")
    origin_key_id, origin_key = _key_of(origin)
    assert notary.https("GET", f"/_matrix/key/v2/query/{origin.server_name}").status == 200
    origin.stop()
    federation.servers.remove(origin)

    # Past the cached document's half-life, so the notary tries the origin again and fails.
    far_future = notary.homeserver.now_ms() + 3 * 24 * 3600 * 1000
    body = {
        "server_keys": {origin.server_name: {origin_key_id: {"minimum_valid_until_ts": far_future}}}
    }
    result = notary.https("POST", "/_matrix/key/v2/query", body=body)
    assert result.status == 200, result.body
    [document] = result.json()["server_keys"]
    assert document["verify_keys"][origin_key_id]["key"] == origin_key


def test_notary_answers_empty_for_unreachable_servers(federation: Federation) -> None:
    notary = federation.start("notary")
    result = notary.https("GET", "/_matrix/key/v2/query/127.0.0.1:1")
    assert result.status == 200, result.body
    assert result.json() == {"server_keys": []}


def test_notary_rejects_malformed_queries(federation: Federation) -> None:
    notary = federation.start("notary")
    result = notary.https("POST", "/_matrix/key/v2/query", body={"server_keys": []})
    assert result.status == 400
    assert result.json()["errcode"] == "M_BAD_JSON"
    result = notary.https("POST", "/_matrix/key/v2/query", body=b"{not json")
    assert result.status == 400
    assert result.json()["errcode"] == "M_NOT_JSON"
    bad_minimum = {"server_keys": {"example.org": {"ed25519:a": {"minimum_valid_until_ts": "x"}}}}
    result = notary.https("POST", "/_matrix/key/v2/query", body=bad_minimum)
    assert result.status == 400


def test_keys_through_a_trusted_notary(federation: Federation) -> None:
    notary = federation.start("notary")
    origin = federation.start("origin")
    notary_key_id, notary_key = _key_of(notary)
    origin_key_id, origin_key = _key_of(origin)
    asker = federation.start(
        "asker",
        trusted_key_servers=[
            {"server_name": notary.server_name, "verify_keys": {notary_key_id: notary_key}}
        ],
    )

    keys = _fetch(asker, {origin.server_name: {origin_key_id}})
    assert encode_base64(keys[(origin.server_name, origin_key_id)].verify_key.encode()) == (
        origin_key
    )
    rows = asker.run_sync(ServerKeyStore(asker.homeserver.database).get_keys([origin.server_name]))  # type: ignore[arg-type]
    assert [row.from_server for row in rows] == [notary.server_name]
    # The notary fetched and stored them itself on the way.
    notary_rows = notary.run_sync(
        ServerKeyStore(notary.homeserver.database).get_keys([origin.server_name])  # type: ignore[arg-type]
    )
    assert [row.from_server for row in notary_rows] == [origin.server_name]
    assert json.loads(notary_rows[0].key_json)["signatures"].keys() == {origin.server_name}


def test_notary_with_wrong_key_is_not_believed(federation: Federation) -> None:
    notary = federation.start("notary")
    origin = federation.start("origin")
    origin_key_id, _ = _key_of(origin)
    notary_key_id, _ = _key_of(notary)
    # A well-formed key, but not the notary's.
    _, someone_elses_key = _key_of(origin)
    asker = federation.start(
        "asker",
        trusted_key_servers=[
            {"server_name": notary.server_name, "verify_keys": {notary_key_id: someone_elses_key}}
        ],
    )

    # The notary's answer fails its signature check, so the origin is asked directly.
    keys = _fetch(asker, {origin.server_name: {origin_key_id}})
    assert (origin.server_name, origin_key_id) in keys
    rows = asker.run_sync(ServerKeyStore(asker.homeserver.database).get_keys([origin.server_name]))  # type: ignore[arg-type]
    assert [row.from_server for row in rows] == [origin.server_name]


def test_blacklisted_addresses_are_not_contacted(federation: Federation) -> None:
    b = federation.start("b")
    b_key_id, _ = _key_of(b)
    # Loopback is in the default ip_range_blacklist; without the whitelist B is unreachable.
    a = federation.start("a", ip_range_whitelist=[])
    assert _fetch(a, {b.server_name: {b_key_id}}) == {}


def test_notary_without_configured_keys_is_checked_with_its_own(federation: Federation) -> None:
    notary = federation.start("notary")
    origin = federation.start("origin")
    origin_key_id, origin_key = _key_of(origin)
    # No verify_keys: the notary's own keys are fetched from it and its answer checked
    # against them (these test servers do not verify certificates, hence the opt-in).
    asker = federation.start(
        "asker",
        trusted_key_servers=[{"server_name": notary.server_name, "accept_keys_insecurely": True}],
    )
    keys = _fetch(asker, {origin.server_name: {origin_key_id}})
    assert encode_base64(keys[(origin.server_name, origin_key_id)].verify_key.encode()) == (
        origin_key
    )
    rows = asker.run_sync(ServerKeyStore(asker.homeserver.database).get_keys([origin.server_name]))  # type: ignore[arg-type]
    assert [row.from_server for row in rows] == [notary.server_name]


def test_empty_domain_whitelist_allows_no_federation(federation: Federation) -> None:
    other = federation.start("other")
    closed = federation.start("closed", federation_domain_whitelist=[])
    other_key_id, _ = _key_of(other)
    # Outbound: nobody may be asked, not even for keys.
    assert _fetch(closed, {other.server_name: {other_key_id}}) == {}
    # Inbound: a signed request from any server is refused.
    with pytest.raises(HttpResponseError) as refused:
        other.run_sync(
            other.homeserver.federation_client.get_json(
                closed.server_name,
                "/_matrix/federation/v1/query/profile",
                {"user_id": "@a:" + closed.server_name},
            )
        )
    assert (refused.value.status, refused.value.errcode) == (403, "M_FORBIDDEN")
