"""End-to-end encryption across two Hearth servers over real TLS: /keys/query and
/keys/claim for a user of the other server (through /user/keys/query and /user/keys/claim),
/user/devices, and to-device messages (m.direct_to_device) with their de-duplication."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.integration import federation_helpers
from tests.integration.e2e_helpers import Device, cross_signing_keys, post, sync
from tests.integration.federation_helpers import FederatedServer, Federation
from tests.integration.harness import RegisteredUser

db_configs = federation_helpers.db_configs
federation = federation_helpers.federation


def _with_keys(server: FederatedServer, user: RegisteredUser, otks: int = 0) -> Device:
    device = Device(user)
    body: dict[str, Any] = {"device_keys": device.device_keys()}
    if otks:
        body["one_time_keys"] = device.one_time_keys(range(otks))
    result = post(server, user.access_token, "/keys/upload", body)
    assert result.status == 200, result.body
    return device


def _signed(
    origin: FederatedServer, method: str, destination: str, path: str, data: Any = None
) -> Any:
    client = origin.homeserver.federation_client
    if method == "GET":
        return origin.run_sync(client.get_json(destination, path))
    return origin.run_sync(client.post_json(destination, path, data=data))


def test_keys_query_for_a_remote_user(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    alice = a.register_user("alice")
    bob = b.register_user("bob")
    device = _with_keys(a, alice)
    _, _, _, signing_body = cross_signing_keys(alice.user_id)
    uploaded = post(a, alice.access_token, "/keys/device_signing/upload", signing_body)
    assert uploaded.status == 200, uploaded.body

    result = post(b, bob.access_token, "/keys/query", {"device_keys": {alice.user_id: []}})

    assert result.status == 200, result.body
    answer = result.json()
    assert answer["failures"] == {}
    got = answer["device_keys"][alice.user_id][device.device_id]
    assert got["keys"] == device.device_keys()["keys"]
    assert got["signatures"] == device.device_keys()["signatures"]
    # Device names stay on their server (Synapse's default).
    assert "device_display_name" not in got.get("unsigned", {})
    assert answer["master_keys"][alice.user_id] == signing_body["master_key"]
    assert answer["self_signing_keys"][alice.user_id] == signing_body["self_signing_key"]
    assert alice.user_id not in answer["user_signing_keys"]


def test_keys_query_names_the_unreachable_server_in_failures(federation: Federation) -> None:
    b = federation.start("b")
    bob = b.register_user("bob")
    gone = f"127.0.0.1:{federation_helpers.free_port()}"

    result = post(
        b, bob.access_token, "/keys/query", {"device_keys": {f"@x:{gone}": []}, "timeout": 2000}
    )

    assert result.status == 200, result.body
    answer = result.json()
    assert set(answer["failures"]) == {gone}
    assert answer["device_keys"] == {}


def test_keys_claim_for_a_remote_user(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    alice = a.register_user("alice")
    bob = b.register_user("bob")
    device = _with_keys(a, alice, otks=2)
    wanted = {"one_time_keys": {alice.user_id: {device.device_id: "signed_curve25519"}}}

    first = post(b, bob.access_token, "/keys/claim", wanted).json()
    second = post(b, bob.access_token, "/keys/claim", wanted).json()
    third = post(b, bob.access_token, "/keys/claim", wanted).json()

    assert first["failures"] == {}
    claimed = [
        answer["one_time_keys"][alice.user_id][device.device_id] for answer in (first, second)
    ]
    assert claimed[0] != claimed[1]
    assert {k for c in claimed for k in c} == {"signed_curve25519:K0", "signed_curve25519:K1"}
    assert third["one_time_keys"] == {}
    counts = post(a, alice.access_token, "/keys/upload", {}).json()["one_time_key_counts"]
    assert counts.get("signed_curve25519", 0) == 0


def test_user_endpoints_answer_only_for_local_users(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    alice = a.register_user("alice")
    device = _with_keys(a, alice, otks=1)

    devices = _signed(
        b, "GET", a.server_name, f"/_matrix/federation/v1/user/devices/{quote(alice.user_id)}"
    )
    query = _signed(
        b,
        "POST",
        a.server_name,
        "/_matrix/federation/v1/user/keys/query",
        {"device_keys": {alice.user_id: [], f"@someone:{b.server_name}": []}},
    )

    assert devices["user_id"] == alice.user_id
    assert devices["stream_id"] > 0
    assert [d["device_id"] for d in devices["devices"]] == [device.device_id]
    assert devices["devices"][0]["keys"]["keys"] == device.device_keys()["keys"]
    assert list(query["device_keys"]) == [alice.user_id]


def test_to_device_reaches_the_other_server(federation: Federation) -> None:
    a = federation.start("a")
    b = federation.start("b")
    alice = a.register_user("alice")
    bob = b.register_user("bob")
    since = sync(a, alice.access_token)["next_batch"]
    content = {"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": {"k": {"body": "x"}}}

    sent = b.request(
        "PUT",
        "/_matrix/client/v3/sendToDevice/m.room.encrypted/txn1",
        access_token=bob.access_token,
        body={"messages": {alice.user_id: {alice.device_id: content}}},
    )
    assert sent.status == 200, sent.body

    response = sync(a, alice.access_token, since, timeout=10_000)
    events = response["to_device"]["events"]
    assert events == [{"type": "m.room.encrypted", "sender": bob.user_id, "content": content}]


def test_inbound_to_device_is_delivered_once_and_only_from_its_server(
    federation: Federation,
) -> None:
    a = federation.start("a")
    b = federation.start("b")
    alice = a.register_user("alice")
    since = sync(a, alice.access_token)["next_batch"]
    handler = a.homeserver.transaction_handler

    def edu(sender: str, message_id: str, body: str) -> dict[str, Any]:
        return {
            "edu_type": "m.direct_to_device",
            "content": {
                "sender": sender,
                "type": "m.test",
                "message_id": message_id,
                "messages": {alice.user_id: {"*": {"body": body}}},
            },
        }

    bob_id = f"@bob:{b.server_name}"
    for txn_id, edus in (
        ("t1", [edu(bob_id, "m1", "first")]),
        # A retry of the same message in a new transaction, and a forged sender.
        ("t2", [edu(bob_id, "m1", "first"), edu(f"@eve:{a.server_name}", "m2", "forged")]),
    ):
        a.run_sync(handler.on_transaction(b.server_name, txn_id, {"pdus": [], "edus": edus}))

    events = sync(a, alice.access_token, since)["to_device"]["events"]
    assert events == [{"type": "m.test", "sender": bob_id, "content": {"body": "first"}}]
