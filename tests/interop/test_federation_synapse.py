"""Hearth federating with a real Synapse (the ``matrix-synapse`` test dependency) over TLS on
loopback: keys and signed requests both ways, then every scenario of ``scenarios.py`` with the
room made on Hearth and joined from Synapse, and the other way round. Hearth runs on SQLite
and on PostgreSQL; Synapse on SQLite.

Synapse's log for the duration of a failing test is attached to its report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from signedjson.key import read_signing_keys
from signedjson.sign import sign_json

from tests.integration.federation_helpers import FederatedServer
from tests.interop import scenarios
from tests.interop.federation_sides import HearthSide, Side, SynapseSide, q
from tests.interop.synapse_server import SynapseServer

pytestmark = pytest.mark.slow


@pytest.fixture(params=["hearth_hosts", "synapse_hosts"])
def sides(request: pytest.FixtureRequest, hearth: HearthSide, synapse: SynapseSide) -> Any:
    """(home, away): the room's creator is on home, the other user comes from away."""
    if request.param == "hearth_hosts":
        return hearth, synapse
    return synapse, hearth


def test_keys_and_signed_requests_both_ways(hearth: HearthSide, synapse: SynapseSide) -> None:
    assert isinstance(hearth.server, FederatedServer)  # in-process: its keyring and client
    homeserver = hearth.server.homeserver
    run_sync = hearth.server.run_sync

    # Hearth fetches Synapse's server keys straight from Synapse.
    document = run_sync(homeserver.keyring.fetch_direct(synapse.server_name))
    assert document.server_name == synapse.server_name
    assert document.keys

    # A signed request from Hearth: Synapse fetches Hearth's keys to check it.
    version = run_sync(
        homeserver.federation_client.get_json(synapse.server_name, "/_matrix/federation/v1/version")
    )
    assert version["server"]["name"] == "Synapse"
    hearth_keys = _synapse_view_of_keys(synapse.server, hearth.server_name)
    ours = {f"{k.alg}:{k.version}" for k in homeserver.server_keys.signing_keys}
    assert set(hearth_keys) == ours, hearth_keys

    # Requests signed with Synapse's key: Hearth fetches Synapse's keys to check them. The
    # version endpoint needs no authentication; /query/directory does.
    version_path = "/_matrix/federation/v1/version"
    headers = {"Authorization": _x_matrix(synapse, hearth, "GET", version_path)}
    answer = hearth.server.https("GET", version_path, headers=headers)
    assert answer.status == 200, answer.body
    assert answer.json()["server"]["name"] == "Hearth"
    alias = f"#nothing_here:{hearth.server_name}"
    query_path = f"/_matrix/federation/v1/query/directory?room_alias={q(alias)}"
    authorization = _x_matrix(synapse, hearth, "GET", query_path)
    answer = hearth.server.https("GET", query_path, headers={"Authorization": authorization})
    assert answer.status == 404, answer.body
    assert answer.json()["errcode"] == "M_NOT_FOUND"
    signature = authorization.rsplit('sig="', 1)[1].rstrip('"')
    forged = authorization.replace(signature, "A" * 8 + signature[8:])
    refused = hearth.server.https("GET", query_path, headers={"Authorization": forged})
    assert refused.status == 401, refused.body

    # And a request Synapse itself makes to Hearth: a profile lookup (/query/profile).
    user = hearth.register("keyed")
    hearth_user = user.ok("GET", f"/profile/{q(user.user_id)}")
    asker = synapse.register("asker")
    seen = asker.call("GET", f"/profile/{q(user.user_id)}")
    assert seen.status == 200, seen.body
    assert seen.json() == hearth_user


def _synapse_view_of_keys(server: SynapseServer, server_name: str) -> dict[str, Any]:
    """Hearth's keys as Synapse's notary endpoint serves them (fetching them if needed)."""
    answer = server.federation_request(
        "POST",
        "/_matrix/key/v2/query",
        {"server_keys": {server_name: {}}},
    )
    assert answer.status == 200, answer.body
    documents = [d for d in answer.json()["server_keys"] if d["server_name"] == server_name]
    assert documents, answer.body
    keys: dict[str, Any] = documents[0]["verify_keys"]
    return keys


def _x_matrix(origin: SynapseSide, destination: HearthSide, method: str, uri: str) -> str:
    """An X-Matrix Authorization header signed with Synapse's own signing key."""
    with open(origin.server.directory / "signing.key") as f:
        key = read_signing_keys(f)[0]
    request = {
        "method": method,
        "uri": uri,
        "origin": origin.server_name,
        "destination": destination.server_name,
    }
    key_id = f"{key.alg}:{key.version}"
    signature = sign_json(request, origin.server_name, key)["signatures"][origin.server_name][
        key_id
    ]
    return (
        f'X-Matrix origin="{origin.server_name}",destination="{destination.server_name}",'
        f'key="{key_id}",sig="{signature}"'
    )


def test_create_room_and_join_from_the_other_side(sides: tuple[Side, Side]) -> None:
    scenarios.create_and_join(*sides)


def test_invite(sides: tuple[Side, Side]) -> None:
    scenarios.invite(*sides)


def test_messages_both_ways(sides: tuple[Side, Side]) -> None:
    scenarios.messages_both_ways(*sides)


def test_topic_and_power_levels(sides: tuple[Side, Side]) -> None:
    scenarios.topic_and_power_levels(*sides)


def test_kick_and_ban(sides: tuple[Side, Side]) -> None:
    scenarios.kick_and_ban(*sides)


def test_leave_and_rejoin(sides: tuple[Side, Side]) -> None:
    scenarios.leave_and_rejoin(*sides)


def test_typing_and_receipts(sides: tuple[Side, Side]) -> None:
    scenarios.typing_and_receipts(*sides)


def test_profile_query(sides: tuple[Side, Side]) -> None:
    scenarios.profile_query(*sides)


def test_remote_alias_join(sides: tuple[Side, Side]) -> None:
    scenarios.remote_alias_join(*sides)


def test_backfill_for_a_late_joiner(sides: tuple[Side, Side]) -> None:
    scenarios.backfill_for_late_joiner(*sides)


def test_encrypted_conversation(sides: tuple[Side, Side], tmp_path: Path) -> None:
    scenarios.encrypted_conversation(*sides, tmp_path / "stores")
