"""The ``hearth`` command line: run the server, generate a config, show the version."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from homeserver import __version__

logger = logging.getLogger("homeserver")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "generate-config":
        return _generate_config(args)
    if args.command == "run":
        return _run(args)
    if args.command == "register-user":
        return _register_user(args)
    parser.print_help()
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hearth", description="Hearth Matrix homeserver")
    parser.add_argument("--version", action="version", version=f"hearth {__version__}")
    commands = parser.add_subparsers(dest="command")

    run = commands.add_parser("run", help="run the homeserver")
    run.add_argument("-c", "--config-path", type=Path, help="the homeserver.yaml to use")
    run.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        help="without -c: the folder holding homeserver.yaml; on first run a config, "
        "signing key and SQLite database are generated there (default: ./data)",
    )
    run.add_argument(
        "--server-name",
        default="localhost",
        help="server name for a config generated on first run (default: localhost)",
    )

    generate = commands.add_parser(
        "generate-config", help="write homeserver.yaml, a signing key and optionally a TLS cert"
    )
    generate.add_argument("--server-name", required=True, help="the server's Matrix name")
    generate.add_argument("--data-dir", type=Path, required=True, help="where to write files")
    generate.add_argument(
        "--generate-tls-cert",
        action="store_true",
        help="also write a self-signed certificate and a TLS federation listener on 8448",
    )
    generate.add_argument("--port", type=int, default=8008, help="client listener port")
    generate.add_argument(
        "--bind-address",
        action="append",
        dest="bind_addresses",
        help="address for the listeners to bind (repeatable; default 127.0.0.1)",
    )
    generate.add_argument("--public-baseurl", help="the URL clients reach the server at")
    generate.add_argument("--force", action="store_true", help="overwrite homeserver.yaml")

    register_user = commands.add_parser(
        "register-user",
        help="register a user on a running server through its shared-secret admin API "
        "(as Synapse's register_new_matrix_user)",
    )
    register_user.add_argument(
        "-c", "--config-path", type=Path, required=True, help="the server's homeserver.yaml"
    )
    register_user.add_argument("-u", "--user", required=True, help="the localpart to register")
    register_user.add_argument("-p", "--password", help="the password (asked for if not given)")
    register_user.add_argument("--admin", action="store_true", help="make the user a server admin")
    register_user.add_argument(
        "--url", help="the server's client API URL (default: its first client listener)"
    )
    return parser


def _error(message: str) -> int:
    print(f"hearth: error: {message}", file=sys.stderr)
    return 1


def _generate_config(args: argparse.Namespace) -> int:
    from homeserver.config.generate import generate_config
    from homeserver.config.reader import is_valid_server_name

    if not is_valid_server_name(args.server_name):
        return _error(f"--server-name {args.server_name!r} is not a valid server name")
    try:
        files = generate_config(
            args.server_name,
            args.data_dir,
            generate_tls=args.generate_tls_cert,
            port=args.port,
            bind_addresses=tuple(args.bind_addresses or ("127.0.0.1",)),
            public_baseurl=args.public_baseurl,
            overwrite=args.force,
        )
    except (OSError, ValueError) as e:
        return _error(str(e))
    print(f"wrote {files.config_path}")
    print(f"wrote {files.signing_key_path}")
    if files.tls_certificate_path:
        print(f"wrote {files.tls_certificate_path} and {files.tls_private_key_path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from homeserver.config import ConfigError, load_config
    from homeserver.logging_context import LogConfigError, setup_logging

    config_path: Path = args.config_path
    if config_path is None:
        config_path = args.data_dir / "homeserver.yaml"
        if not config_path.exists():
            from homeserver.config.generate import generate_config
            from homeserver.config.reader import is_valid_server_name

            if not is_valid_server_name(args.server_name):
                return _error(f"--server-name {args.server_name!r} is not a valid server name")
            try:
                generate_config(args.server_name, args.data_dir)
            except OSError as e:
                return _error(str(e))
            print(f"generated {config_path} for server name {args.server_name}", file=sys.stderr)
    try:
        config = load_config(config_path)
        setup_logging(config.log_config)
    except (ConfigError, LogConfigError) as e:
        return _error(str(e))
    for key in config.ignored_keys:
        logger.warning("config key %r is not used by Hearth; ignored", key)
    return _serve(config)


def _serve(config: Any) -> int:
    from homeserver.tls import install_reactor_without_tls

    install_reactor_without_tls()
    from twisted.internet import defer
    from twisted.internet import reactor as global_reactor

    from homeserver.app import Homeserver, StartupError
    from homeserver.server_keys import SigningKeyError
    from storage.engine import EngineError

    # Any: the reactor's interfaces are zope ones, which mypy cannot read without a plugin.
    reactor: Any = global_reactor
    try:
        homeserver = Homeserver(config, reactor)
    except (SigningKeyError, EngineError) as e:
        return _error(str(e))

    outcome: dict[str, str] = {}

    async def start() -> None:
        try:
            await homeserver.start()
        except StartupError as e:
            outcome["error"] = str(e)
            reactor.stop()
        except Exception as e:
            logger.exception("start-up failed")
            outcome["error"] = f"start-up failed: {e}"
            reactor.stop()

    async def shutdown() -> None:
        logger.info("shutting down")
        await homeserver.stop()
        logger.info("stopped cleanly")

    reactor.callWhenRunning(lambda: defer.Deferred.fromCoroutine(start()))
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromCoroutine(shutdown())
    )
    reactor.run()  # SIGTERM and SIGINT stop it gracefully
    if "error" in outcome:
        return _error(outcome["error"])
    return 0


def _register_user(args: argparse.Namespace) -> int:
    import getpass

    from homeserver.config import ConfigError, load_config
    from homeserver.handlers.register import registration_mac

    try:
        config = load_config(args.config_path)
    except ConfigError as e:
        return _error(str(e))
    secret = config.registration_shared_secret
    if not secret:
        return _error("registration_shared_secret is not set in the config file")
    url = args.url or _client_url(config)
    if url is None:
        return _error("the config has no http listener serving 'client'; give --url")
    password = args.password
    if password is None:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Confirm password: "):
            return _error("passwords do not match")
    if not password:
        return _error("the password must not be empty")
    endpoint = url.rstrip("/") + "/_synapse/admin/v1/register"
    try:
        status, body = _http_json("GET", endpoint)
        if status != 200:
            return _error(f"cannot get a nonce from {endpoint}: {body.get('error', status)}")
        nonce = body["nonce"]
        mac = registration_mac(secret, nonce, args.user, password, args.admin)
        status, body = _http_json(
            "POST",
            endpoint,
            {
                "nonce": nonce,
                "username": args.user,
                "password": password,
                "admin": args.admin,
                "mac": mac,
            },
        )
    except OSError as e:
        return _error(f"cannot reach {endpoint}: {e}")
    if status != 200:
        return _error(f"{body.get('errcode', status)}: {body.get('error', '')}")
    print(f"registered {body['user_id']}" + (" (admin)" if args.admin else ""))
    return 0


def _client_url(config: Any) -> str | None:
    for listener in config.listeners:
        if listener.type == "http" and "client" in listener.resources:
            address = listener.bind_addresses[0]
            if address in ("::", "0.0.0.0"):
                address = "localhost"
            elif ":" in address:
                address = f"[{address}]"
            scheme = "https" if listener.tls else "http"
            return f"{scheme}://{address}:{listener.port}"
    return None


def _http_json(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    import json
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return e.code, {}


if __name__ == "__main__":
    sys.exit(main())
