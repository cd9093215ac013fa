"""Config loading: good files, Synapse-style files, and wrong values with one-line errors."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from homeserver.config import ConfigError, load_config, parse_config
from homeserver.config.generate import generate_config
from homeserver.server_keys import load_signing_keys

MINIMAL = {"server_name": "example.org"}


def parse(extra: dict, tmp_path: Path | None = None) -> object:
    return parse_config({**MINIMAL, **extra}, tmp_path or Path("/srv/hearth"))


def test_minimal_config_gets_defaults() -> None:
    config = parse_config(MINIMAL, Path("/srv/hearth"))
    assert config.server_name == "example.org"
    assert config.public_baseurl == "https://example.org/"
    assert config.database.name == "sqlite3"
    assert config.database.args["database"] == "/srv/hearth/homeserver.db"
    assert config.signing_key_path == Path("/srv/hearth/example.org.signing.key")
    assert config.default_room_version == "12"
    assert config.max_upload_size == 50 * 1024 * 1024
    assert config.enable_registration is False
    assert config.federation_verify_certificates is True
    assert ipaddress.ip_network("127.0.0.0/8") in config.ip_range_blacklist
    assert config.trusted_key_servers[0].server_name == "matrix.org"
    assert config.ratelimits["rc_message"].per_second == pytest.approx(0.2)
    assert config.ratelimits["rc_login.failed_attempts"].burst_count == 3
    assert config.ignored_keys == ()


def test_synapse_style_file_mostly_just_works(tmp_path: Path) -> None:
    synapse_yaml = """
server_name: "matrix.example.com"
pid_file: /data/homeserver.pid
report_stats: false
listeners:
  - port: 8008
    tls: false
    type: http
    x_forwarded: true
    bind_addresses: ['::1', '127.0.0.1']
    resources:
      - names: [client, federation]
        compress: false
database:
  name: psycopg2
  args:
    user: synapse_user
    password: secretpassword
    dbname: synapse
    host: localhost
    cp_min: 5
    cp_max: 10
log_config: "/data/matrix.example.com.log.config"
media_store_path: /data/media_store
registration_shared_secret: "abc"
macaroon_secret_key: "xyz"
form_secret: "def"
signing_key_path: "/data/matrix.example.com.signing.key"
trusted_key_servers:
  - server_name: "matrix.org"
max_upload_size: 100M
rc_message:
  per_second: 0.5
  burst_count: 15
rc_login:
  address:
    per_second: 0.15
    burst_count: 5
key_refresh_interval: 2d
ip_range_whitelist: ['10.1.0.0/16']
"""
    path = tmp_path / "homeserver.yaml"
    path.write_text(synapse_yaml)
    config = load_config(path)
    assert config.database.name == "psycopg2"
    assert config.database.args["dbname"] == "synapse"
    listener = config.listeners[0]
    assert listener.x_forwarded and listener.resources == {"client", "federation"}
    assert listener.bind_addresses == ("::1", "127.0.0.1")
    assert config.max_upload_size == 100 * 1024 * 1024
    assert config.ratelimits["rc_message"].burst_count == 15
    assert config.ratelimits["rc_login.address"].per_second == pytest.approx(0.15)
    assert config.ratelimits["rc_login.account"].per_second == pytest.approx(0.003)
    assert config.key_refresh_interval_ms == 2 * 86_400_000
    assert config.ip_range_whitelist == (ipaddress.ip_network("10.1.0.0/16"),)
    assert set(config.ignored_keys) == {
        "pid_file",
        "report_stats",
        "macaroon_secret_key",
        "form_secret",
    }


@pytest.mark.parametrize(
    ("extra", "key", "expected"),
    [
        ({"server_name": "bad name!"}, "server_name", "valid server name"),
        ({"server_name": 12}, "server_name", "non-empty string"),
        ({"enable_registration": "yes"}, "enable_registration", "true or false"),
        ({"default_room_version": "13"}, "default_room_version", "room versions"),
        ({"max_upload_size": "lots"}, "max_upload_size", "size in bytes"),
        ({"listeners": [{"port": 99999}]}, "listeners[0].port", "from 0 to 65535"),
        ({"listeners": [{"port": "8008"}]}, "listeners[0].port", "an integer"),
        ({"listeners": [{"port": 8008, "type": "ftp"}]}, "listeners[0].type", "one of http"),
        (
            {"listeners": [{"port": 8008, "resources": [{"names": ["clients"]}]}]},
            "listeners[0].resources[0].names",
            "resource names",
        ),
        ({"listeners": [{"port": 8448, "tls": True}]}, "listeners", "tls_certificate_path"),
        ({"database": {"name": "mysql"}}, "database.name", "sqlite3, psycopg2"),
        ({"database": {"name": "psycopg2", "args": {"cp_min": 0}}}, "database.args.cp_min", ">= 1"),
        ({"ip_range_blacklist": ["10.0.0.0/33"]}, "ip_range_blacklist", "CIDR"),
        ({"rc_message": {"per_second": -1}}, "rc_message.per_second", "number >= 0"),
        ({"rc_login": {"address": {"burst_count": "x"}}}, "rc_login.address.burst_count", "number"),
        ({"public_baseurl": "example.org"}, "public_baseurl", "http:// or https://"),
        (
            {"trusted_key_servers": [{"verify_keys": {}}]},
            "trusted_key_servers[0].server_name",
            "missing",
        ),
        (
            {"app_service_config_files": ["/nonexistent/as.yaml"]},
            "app_service_config_files[0]",
            "existing file",
        ),
        ({"key_refresh_interval": "soon"}, "key_refresh_interval", "duration"),
    ],
)
def test_wrong_values_name_key_value_and_expectation(extra: dict, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(extra)
    message = str(caught.value)
    assert caught.value.key == key
    assert f"'{key}'" in message
    assert expected in message
    assert "\n" not in message


def test_missing_server_name_is_reported() -> None:
    with pytest.raises(ConfigError, match="'server_name' is missing"):
        parse_config({}, Path("/"))


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="readable config file"):
        load_config(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="YAML mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("server_name: [unclosed\n")
    with pytest.raises(ConfigError, match="valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "homeserver.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                **MINIMAL,
                "media_store_path": "media",
                "database": {"name": "sqlite3", "args": {"database": "db/hs.db"}},
            }
        )
    )
    config = load_config(path)
    assert config.media_store_path == tmp_path / "cfg" / "media"
    assert config.database.args["database"] == str(tmp_path / "cfg" / "db" / "hs.db")


def test_generated_config_loads_and_key_is_synapse_format(tmp_path: Path) -> None:
    files = generate_config("hearth.test", tmp_path, generate_tls=True)
    config = load_config(files.config_path)
    assert config.server_name == "hearth.test"
    assert config.database.name == "sqlite3"
    assert {listener.port for listener in config.listeners} == {8008, 8448}
    assert config.tls_certificate_path == files.tls_certificate_path
    algorithm, version, seed = files.signing_key_path.read_text().split()
    assert algorithm == "ed25519" and version.startswith("a_") and "=" not in seed
    keys = load_signing_keys(config.signing_key_path)
    assert keys[0].version == version
    assert files.config_path.stat().st_mode & 0o077 == 0  # holds the shared secret
    with pytest.raises(FileExistsError):
        generate_config("hearth.test", tmp_path)


def test_generated_config_for_localhost_points_clients_at_8008(tmp_path: Path) -> None:
    files = generate_config("localhost", tmp_path)
    config = load_config(files.config_path)
    assert config.public_baseurl == "http://localhost:8008/"
    assert config.listeners[0].resources >= {"client", "federation", "keys", "health"}
