"""``hearth generate-config``: a working config, signing key and (optionally) TLS certificate."""

from __future__ import annotations

import datetime
import json
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from signedjson.key import generate_signing_key, write_signing_keys

from homeserver.room_versions import DEFAULT_ROOM_VERSION


@dataclass(frozen=True)
class GeneratedFiles:
    config_path: Path
    signing_key_path: Path
    tls_certificate_path: Path | None
    tls_private_key_path: Path | None


def _q(value: str) -> str:
    # A JSON string is a valid double-quoted YAML scalar, whatever it contains.
    return json.dumps(value)


def generate_config(
    server_name: str,
    data_dir: Path,
    *,
    generate_tls: bool = False,
    port: int = 8008,
    bind_addresses: tuple[str, ...] = ("127.0.0.1",),
    public_baseurl: str | None = None,
    overwrite: bool = False,
) -> GeneratedFiles:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path = data_dir / "homeserver.yaml"
    if config_path.exists() and not overwrite:
        raise FileExistsError(f"{config_path} already exists; not overwriting it")

    signing_key_path = data_dir / f"{server_name}.signing.key"
    if not signing_key_path.exists():
        write_signing_key(signing_key_path)

    log_config_path = data_dir / f"{server_name}.log.config"
    if not log_config_path.exists():
        log_config_path.write_text(LOG_CONFIG_TEMPLATE, encoding="utf-8")

    tls_cert = tls_key = None
    if generate_tls:
        tls_cert = data_dir / f"{server_name}.tls.crt"
        tls_key = data_dir / f"{server_name}.tls.key"
        if not tls_cert.exists() or not tls_key.exists():
            write_self_signed_certificate(server_name, tls_cert, tls_key)

    if public_baseurl is None:
        host = server_name.split(":")[0] if not server_name.startswith("[") else server_name
        if host in ("localhost", "127.0.0.1", "[::1]"):
            public_baseurl = f"http://localhost:{port}/"
        else:
            public_baseurl = f"https://{server_name}/"

    bind = "[" + ", ".join(_q(a) for a in bind_addresses) + "]"
    resources = "[client, federation, keys, media, health]"
    tls_listener = ""
    if tls_cert is not None:
        resources = "[client, media, health]"
        tls_listener = f"""
  # Federation over TLS with the certificate generated alongside this file.
  - port: 8448
    bind_addresses: {bind}
    type: http
    tls: true
    resources:
      - names: [federation, keys, health]
"""
    text = f"""# Hearth homeserver configuration. Key names follow Synapse's homeserver.yaml.
# Every key is described in docs/configuration.md. Relative paths are relative to this file.

server_name: {_q(server_name)}
public_baseurl: {_q(public_baseurl)}

listeners:
  - port: {port}
    bind_addresses: {bind}
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: {resources}
{tls_listener}
database:
  name: sqlite3
  args:
    database: homeserver.db

signing_key_path: {_q(signing_key_path.name)}
log_config: {_q(log_config_path.name)}
media_store_path: media_store
max_upload_size: 50M
{_tls_lines(tls_cert, tls_key)}
enable_registration: false
enable_registration_without_verification: false
registration_shared_secret: {_q(secrets.token_urlsafe(32))}

default_room_version: {_q(DEFAULT_ROOM_VERSION)}
trusted_key_servers:
  - server_name: "matrix.org"
"""
    tmp_path = config_path.with_suffix(".yaml.tmp")
    tmp_path.write_text(text, encoding="utf-8")
    os.chmod(tmp_path, 0o600)  # it holds the registration shared secret
    tmp_path.replace(config_path)
    return GeneratedFiles(config_path, signing_key_path, tls_cert, tls_key)


def _tls_lines(cert: Path | None, key: Path | None) -> str:
    if cert is None or key is None:
        return ""
    return f"tls_certificate_path: {_q(cert.name)}\ntls_private_key_path: {_q(key.name)}\n"


def write_signing_key(path: Path) -> None:
    """Write a new ed25519 key in Synapse's format: ``ed25519 <key_id> <unpadded base64 seed>``."""
    alphabet = string.ascii_letters + string.digits
    version = "a_" + "".join(secrets.choice(alphabet) for _ in range(4))
    key = generate_signing_key(version)
    tmp_path = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        write_signing_keys(f, [key])
    tmp_path.replace(path)


def write_self_signed_certificate(server_name: str, cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    host = server_name.rsplit(":", 1)[0] if not server_name.endswith("]") else server_name
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(private_key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


LOG_CONFIG_TEMPLATE = """\
# Python logging dictConfig, as Synapse's log config. Every line carries the request id.
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
filters:
  context:
    (): homeserver.logging_context.RequestIdFilter
handlers:
  console:
    class: logging.StreamHandler
    formatter: precise
    filters: [context]
loggers:
  twisted:
    level: WARNING
root:
  level: INFO
  handlers: [console]
disable_existing_loggers: false
"""
