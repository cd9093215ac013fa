"""The first endpoints, served by a real Hearth on a free port, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from signedjson.key import get_verify_key
from signedjson.sign import SignatureVerifyException, verify_signed_json

from homeserver import __version__
from homeserver.server_keys import load_signing_keys
from tests.integration.harness import RunningHomeserver, make_config, start_homeserver


@pytest.fixture
def homeserver(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> Iterator[RunningHomeserver]:
    config = make_config(
        tmp_path,
        db_config,
        serve_server_wellknown=True,
        extra_well_known_client_content={"org.example.custom": {"x": 1}},
        key_refresh_interval="2h",
        old_signing_keys={
            "ed25519:old1": {
                "key": "l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ",
                "expired_ts": 1500000000000,
            }
        },
    )
    running = start_homeserver(config, reactor_thread, run_sync)
    yield running
    running.stop()


def test_client_versions(homeserver: RunningHomeserver) -> None:
    result = homeserver.request("GET", "/_matrix/client/versions")
    assert result.status == 200
    body = result.json()
    assert "v1.19" in body["versions"] and "r0.6.1" in body["versions"]
    assert isinstance(body["unstable_features"], dict)
    assert result.headers["content-type"] == "application/json"
    assert result.headers["access-control-allow-origin"] == "*"


def test_well_known_documents(homeserver: RunningHomeserver) -> None:
    client = homeserver.request("GET", "/.well-known/matrix/client").json()
    assert client == {
        "m.homeserver": {"base_url": "https://matrix.hs.test"},
        "org.example.custom": {"x": 1},
    }
    server = homeserver.request("GET", "/.well-known/matrix/server").json()
    assert server == {"m.server": "hs.test:443"}


def test_health(homeserver: RunningHomeserver) -> None:
    result = homeserver.request("GET", "/health")
    assert (result.status, result.body) == (200, b"OK")


def test_federation_version(homeserver: RunningHomeserver) -> None:
    body = homeserver.request("GET", "/_matrix/federation/v1/version").json()
    assert body == {"server": {"name": "Hearth", "version": __version__}}


def test_server_keys_are_signed_and_verify(homeserver: RunningHomeserver, tmp_path: Path) -> None:
    before_ms = int(time.time() * 1000)
    result = homeserver.request("GET", "/_matrix/key/v2/server")
    assert result.status == 200
    document = result.json()
    signing_key = load_signing_keys(tmp_path / "hs.test.signing.key")[0]
    key_id = f"ed25519:{signing_key.version}"
    assert document["server_name"] == "hs.test"
    assert set(document["verify_keys"]) == {key_id}
    assert document["old_verify_keys"] == {
        "ed25519:old1": {
            "key": "l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ",
            "expired_ts": 1500000000000,
        }
    }
    two_hours = 2 * 3600 * 1000
    assert before_ms + two_hours <= document["valid_until_ts"] <= before_ms + two_hours + 60_000
    verify_key = get_verify_key(signing_key)
    verify_signed_json(document, "hs.test", verify_key)
    document["valid_until_ts"] += 1
    with pytest.raises(SignatureVerifyException):
        verify_signed_json(document, "hs.test", verify_key)
    # The deprecated per-key path answers the same document.
    legacy = homeserver.request("GET", f"/_matrix/key/v2/server/{key_id}").json()
    assert legacy["verify_keys"] == document["verify_keys"]


def test_metrics_count_requests_per_route_and_database_time(
    homeserver: RunningHomeserver,
) -> None:
    homeserver.request("GET", "/_matrix/client/versions")
    homeserver.request("GET", "/_matrix/client/v3/nothing-here")
    text = homeserver.request("GET", "/metrics").body.decode()
    assert (
        'hearth_http_requests_total{code="200",method="GET",route="/_matrix/client/versions"}'
        in text
    )
    assert 'hearth_http_requests_total{code="404",method="GET",route="unmatched"}' in text
    assert "hearth_http_request_duration_seconds_bucket" in text
    assert "hearth_db_transaction_seconds" in text  # migrations ran in named transactions
    assert "process_resident_memory_bytes" in text
    assert homeserver.request("GET", "/_synapse/metrics").status == 200


def test_unknown_endpoint_and_method(homeserver: RunningHomeserver) -> None:
    missing = homeserver.request("GET", "/_matrix/client/v3/unknown")
    assert (missing.status, missing.json()["errcode"]) == (404, "M_UNRECOGNIZED")
    assert missing.headers["access-control-allow-origin"] == "*"
    wrong = homeserver.request("POST", "/_matrix/client/versions", body={})
    assert (wrong.status, wrong.json()["errcode"]) == (405, "M_UNRECOGNIZED")


def test_options_preflight_answers_cors_without_running_the_endpoint(
    homeserver: RunningHomeserver,
) -> None:
    result = homeserver.request("OPTIONS", "/_matrix/client/v3/rooms/!r:hs.test/send/m/1")
    assert result.status == 204
    assert result.headers["access-control-allow-origin"] == "*"
    assert "PUT" in result.headers["access-control-allow-methods"]
    assert "Authorization" in result.headers["access-control-allow-headers"]


def test_resources_decide_what_a_listener_serves(
    tmp_path: Path, db_config: Any, reactor_thread: Any, run_sync: Any
) -> None:
    config = make_config(tmp_path, db_config, resources=("federation",))
    running = start_homeserver(config, reactor_thread, run_sync)
    try:
        assert running.request("GET", "/_matrix/federation/v1/version").status == 200
        assert running.request("GET", "/_matrix/key/v2/server").status == 200
        assert running.request("GET", "/_matrix/client/versions").status == 404
        assert running.request("GET", "/metrics").status == 404
        assert running.request("GET", "/.well-known/matrix/server").status == 404
        assert running.request("GET", "/health").status == 200
    finally:
        running.stop()
