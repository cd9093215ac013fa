"""Load ``homeserver.yaml`` into a ``HomeserverConfig``.

Relative paths in the file are resolved against the directory holding the file, so a
data folder can be moved as a whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from homeserver.config.model import (
    RESOURCE_NAMES,
    SYNAPSE_ONLY_RESOURCE_NAMES,
    AccountsConfig,
    FederationRatelimitSettings,
    HomeserverConfig,
    ListenerConfig,
    MediaConfig,
    MediaUploadLimit,
    OldSigningKey,
    PresenceConfig,
    RatelimitSettings,
    ThumbnailSize,
    TrustedKeyServer,
    TurnSettings,
)
from homeserver.config.reader import (
    ConfigError,
    MissingConfigError,
    Section,
    is_valid_server_name,
)
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from storage.engine import DatabaseConfig

logger = logging.getLogger(__name__)

# Synapse's default outbound IP blocklist: private, loopback, link-local and reserved ranges.
DEFAULT_IP_RANGE_BLACKLIST = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
)

# Synapse's defaults for its simple rate limiters: name -> (per_second, burst_count).
# Nested limiters (rc_login.address, ...) are named with a dot.
DEFAULT_RATELIMITS: Mapping[str, tuple[float, float]] = {
    "rc_message": (0.2, 10),
    "rc_registration": (0.17, 3),
    "rc_registration_token_validity": (0.1, 5),
    "rc_login.address": (0.003, 5),
    "rc_login.account": (0.003, 5),
    "rc_login.failed_attempts": (0.17, 3),
    "rc_admin_redaction": (1.0, 50),
    "rc_joins.local": (0.1, 10),
    "rc_joins.remote": (0.01, 10),
    "rc_joins_per_room": (1.0, 10),
    "rc_3pid_validation": (0.003, 5),
    "rc_invites.per_room": (0.3, 10),
    "rc_invites.per_user": (0.003, 5),
    "rc_invites.per_issuer": (0.3, 10),
    "rc_third_party_invite": (0.2, 10),
    "rc_media_create": (10.0, 50),
    "rc_key_requests": (20.0, 100),
    "rc_presence.per_user": (0.1, 1),
    "rc_room_creation": (0.05, 10),
    "rc_reports": (1.0, 5),
    "rc_delayed_event_mgmt": (1.0, 5),
}

# Keys Hearth reads. Anything else is logged once as ignored.
KNOWN_KEYS = frozenset(
    {
        "server_name",
        "public_baseurl",
        "listeners",
        "database",
        "signing_key_path",
        "old_signing_keys",
        "key_refresh_interval",
        "tls_certificate_path",
        "tls_private_key_path",
        "log_config",
        "enable_registration",
        "enable_registration_without_verification",
        "registration_shared_secret",
        "media_store_path",
        "max_upload_size",
        "trusted_key_servers",
        "federation_verify_certificates",
        "federation_domain_whitelist",
        "ip_range_blacklist",
        "ip_range_blocklist",
        "ip_range_whitelist",
        "ip_range_allowlist",
        "rc_federation",
        "default_room_version",
        "app_service_config_files",
        "serve_server_wellknown",
        "extra_well_known_client_content",
        "require_membership_for_aliases",
        "enable_room_list_search",
        "allow_public_rooms_without_auth",
        "allow_public_rooms_over_federation",
        "enable_set_displayname",
        "enable_set_avatar_url",
        "turn_uris",
        "turn_shared_secret",
        "turn_shared_secret_path",
        "turn_username",
        "turn_password",
        "turn_user_lifetime",
        "turn_allow_guests",
        "presence",
        "use_presence",
        # media repository (parsed by _parse_media)
        "max_image_pixels",
        "dynamic_thumbnails",
        "thumbnail_sizes",
        "enable_authenticated_media",
        "unused_expiration_time",
        "max_pending_media_uploads",
        "media_retention",
        "media_upload_limits",
        "prevent_media_downloads_from",
        "url_preview_enabled",
        "url_preview_ip_range_blacklist",
        "url_preview_ip_range_whitelist",
        "url_preview_url_blacklist",
        "url_preview_accept_language",
        "max_spider_size",
        # accounts (parsed by _parse_accounts)
        "bcrypt_rounds",
        "password_config",
        "allow_guest_access",
        "registration_requires_token",
        "refreshable_access_token_lifetime",
        "refresh_token_lifetime",
        "nonrefreshable_access_token_lifetime",
        "session_lifetime",
    }
    | {name.split(".")[0] for name in DEFAULT_RATELIMITS}
)


def load_config(path: str | Path) -> HomeserverConfig:
    """Read and check a config file. Raises ``ConfigError`` with a one-line message."""
    config_path = Path(path).resolve()
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("-c", str(path), f"a readable config file ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("-c", str(path), f"valid YAML (parse error{where})") from None
    if not isinstance(data, dict):
        raise ConfigError("-c", str(path), "a YAML mapping of config keys")
    return parse_config(data, config_path.parent, config_path)


def parse_config(
    data: Mapping[str, Any], base_dir: Path, config_path: Path | None = None
) -> HomeserverConfig:
    root = Section(data)

    def path(value: str) -> Path:
        return (base_dir / value).resolve()

    server_name = root.string("server_name")
    if not is_valid_server_name(server_name):
        raise ConfigError("server_name", server_name, "a valid server name such as example.com")

    public_baseurl = root.string("public_baseurl", f"https://{server_name}/")
    if not public_baseurl.startswith(("http://", "https://")):
        raise ConfigError("public_baseurl", public_baseurl, "an http:// or https:// URL")
    if not public_baseurl.endswith("/"):
        public_baseurl += "/"

    listeners = tuple(_parse_listener(s) for s in root.sections("listeners"))
    tls_certificate_path = root.string("tls_certificate_path", None)
    tls_private_key_path = root.string("tls_private_key_path", None)
    if any(listener.tls for listener in listeners) and not (
        tls_certificate_path and tls_private_key_path
    ):
        raise ConfigError(
            "listeners",
            "tls: true",
            "tls_certificate_path and tls_private_key_path set when a listener uses TLS",
        )

    default_room_version = str(root.raw("default_room_version", "12"))
    if default_room_version not in KNOWN_ROOM_VERSIONS:
        raise ConfigError(
            "default_room_version",
            default_room_version,
            "one of the room versions " + ", ".join(KNOWN_ROOM_VERSIONS),
        )

    ratelimits = _parse_ratelimits(root)
    federation = root.section("rc_federation")
    rc_federation = FederationRatelimitSettings(
        window_size_ms=federation.integer("window_size", 1000, minimum=1),
        sleep_limit=federation.integer("sleep_limit", 10, minimum=0),
        sleep_delay_ms=federation.integer("sleep_delay", 500, minimum=0),
        reject_limit=federation.integer("reject_limit", 50, minimum=0),
        concurrent=federation.integer("concurrent", 3, minimum=1),
    )

    app_service_files = tuple(path(p) for p in root.string_list("app_service_config_files", []))
    for i, app_service_file in enumerate(app_service_files):
        if not app_service_file.is_file():
            raise ConfigError(
                f"app_service_config_files[{i}]", str(app_service_file), "an existing file"
            )

    well_known_extra = root.mapping("extra_well_known_client_content", {})

    ignored = tuple(sorted(str(k) for k in data if k not in KNOWN_KEYS))
    log_config = root.string("log_config", None)
    signing_key_path = root.string("signing_key_path", f"{server_name}.signing.key")

    return HomeserverConfig(
        config_path=config_path,
        server_name=server_name,
        public_baseurl=public_baseurl,
        listeners=listeners,
        database=_parse_database(root.section("database"), base_dir),
        signing_key_path=path(signing_key_path),
        old_signing_keys=_parse_old_signing_keys(root),
        key_refresh_interval_ms=root.duration_ms("key_refresh_interval", 86_400_000),
        tls_certificate_path=path(tls_certificate_path) if tls_certificate_path else None,
        tls_private_key_path=path(tls_private_key_path) if tls_private_key_path else None,
        log_config=path(log_config) if log_config else None,
        enable_registration=root.boolean("enable_registration", False),
        enable_registration_without_verification=root.boolean(
            "enable_registration_without_verification", False
        ),
        registration_shared_secret=root.string("registration_shared_secret", None),
        media_store_path=path(root.string("media_store_path", "media_store")),
        max_upload_size=root.size("max_upload_size", 50 * 1024 * 1024),
        trusted_key_servers=_parse_trusted_key_servers(root),
        federation_verify_certificates=root.boolean("federation_verify_certificates", True),
        ip_range_blacklist=tuple(
            root.ip_networks(
                "ip_range_blocklist" if "ip_range_blocklist" in data else "ip_range_blacklist",
                DEFAULT_IP_RANGE_BLACKLIST,
            )
        ),
        ip_range_whitelist=tuple(
            root.ip_networks(
                "ip_range_allowlist" if "ip_range_allowlist" in data else "ip_range_whitelist", []
            )
        ),
        ratelimits=ratelimits,
        rc_federation=rc_federation,
        default_room_version=default_room_version,
        app_service_config_files=app_service_files,
        serve_server_wellknown=root.boolean("serve_server_wellknown", False),
        extra_well_known_client_content=well_known_extra,
        ignored_keys=ignored,
        accounts=_parse_accounts(root),
        require_membership_for_aliases=root.boolean("require_membership_for_aliases", True),
        enable_room_list_search=root.boolean("enable_room_list_search", True),
        allow_public_rooms_without_auth=root.boolean("allow_public_rooms_without_auth", False),
        allow_public_rooms_over_federation=root.boolean(
            "allow_public_rooms_over_federation", False
        ),
        enable_set_displayname=root.boolean("enable_set_displayname", True),
        enable_set_avatar_url=root.boolean("enable_set_avatar_url", True),
        turn=_parse_turn(root, path),
        presence=_parse_presence(root),
        media=_parse_media(root),
        federation_domain_whitelist=(
            None
            if root.raw("federation_domain_whitelist", None) is None
            else tuple(root.string_list("federation_domain_whitelist", []))
        ),
    )


def _parse_presence(root: Section) -> PresenceConfig:
    section = root.section("presence")
    # Synapse's older top-level use_presence is the default for presence.enabled.
    enabled = section.boolean("enabled", root.boolean("use_presence", True))
    granularity = section.duration_ms("last_active_granularity", 60_000)
    sync_online = section.duration_ms("sync_online_timeout", 30_000)
    idle = section.duration_ms("idle_timeout", 5 * 60_000)
    if granularity <= 0:
        raise ConfigError(
            section.key("last_active_granularity"), granularity, "a positive duration"
        )
    if sync_online <= 0:
        raise ConfigError(section.key("sync_online_timeout"), sync_online, "a positive duration")
    if idle <= granularity:
        raise ConfigError(
            section.key("idle_timeout"), idle, "a duration longer than last_active_granularity"
        )
    return PresenceConfig(
        enabled=enabled,
        idle_timeout_ms=idle,
        sync_online_timeout_ms=sync_online,
        last_active_granularity_ms=granularity,
    )


def _parse_listener(section: Section) -> ListenerConfig:
    port = section.integer("port", minimum=0, maximum=65535)
    listener_type = section.choice("type", ("http", "metrics", "manhole", "replication"), "http")
    bind = section.raw("bind_addresses", None)
    if bind is None:
        bind_address = section.raw("bind_address", None)
        bind = [bind_address] if bind_address else ["::", "0.0.0.0"]
    if not isinstance(bind, list) or not bind or not all(isinstance(a, str) for a in bind):
        raise ConfigError(section.key("bind_addresses"), bind, "a list of IP addresses")
    resources: set[str] = set()
    if listener_type == "metrics":
        resources.add("metrics")
    for res in section.sections("resources"):
        names = res.string_list("names", [])
        for name in names:
            if name in SYNAPSE_ONLY_RESOURCE_NAMES:
                logger.warning("listener resource %r is not served by Hearth; ignored", name)
            elif name not in RESOURCE_NAMES:
                raise ConfigError(
                    res.key("names"), name, "resource names among " + ", ".join(RESOURCE_NAMES)
                )
            else:
                resources.add(name)
        res.boolean("compress", False)
    return ListenerConfig(
        port=port,
        bind_addresses=tuple(bind),
        type=listener_type,
        tls=section.boolean("tls", False),
        x_forwarded=section.boolean("x_forwarded", False),
        resources=frozenset(resources),
    )


def _parse_database(section: Section, base_dir: Path) -> DatabaseConfig:
    name = section.choice("name", ("sqlite3", "psycopg2"), "sqlite3")
    args = dict(section.mapping("args", {}))
    if name == "sqlite3":
        database = args.get("database", "homeserver.db")
        if not isinstance(database, str) or not database:
            raise ConfigError("database.args.database", database, "a path to the SQLite file")
        if database != ":memory:":
            args["database"] = str((base_dir / database).resolve())
    else:
        args_section = Section(args, "database.args.")
        for key in ("cp_min", "cp_max"):
            if key in args:
                args_section.integer(key, minimum=1)
        if "port" in args:
            args_section.integer("port", minimum=1, maximum=65535)
    return DatabaseConfig(name=name, args=args)


def _parse_ratelimits(root: Section) -> dict[str, RatelimitSettings]:
    limits: dict[str, RatelimitSettings] = {}
    for name, (per_second, burst_count) in DEFAULT_RATELIMITS.items():
        top, _, sub = name.partition(".")
        section = root.section(top)
        if sub:
            section = section.section(sub)
        limits[name] = RatelimitSettings(
            per_second=section.number("per_second", per_second),
            burst_count=section.number("burst_count", burst_count),
        )
    return limits


def _parse_trusted_key_servers(root: Section) -> tuple[TrustedKeyServer, ...]:
    servers = []
    for entry in root.sections("trusted_key_servers", [{"server_name": "matrix.org"}]):
        name = entry.string("server_name")
        keys = entry.mapping("verify_keys", {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
            raise ConfigError(entry.key("verify_keys"), keys, "a mapping of key ID to base64 key")
        servers.append(
            TrustedKeyServer(
                server_name=name,
                verify_keys=dict(keys),
                accept_keys_insecurely=entry.boolean("accept_keys_insecurely", False),
            )
        )
    return tuple(servers)


def _parse_old_signing_keys(root: Section) -> dict[str, OldSigningKey]:
    keys = {}
    old = root.mapping("old_signing_keys", {})
    for key_id in old:
        entry = root.section("old_signing_keys").section(str(key_id), required=True)
        keys[str(key_id)] = OldSigningKey(
            key=entry.string("key"), expired_ts=entry.integer("expired_ts", minimum=0)
        )
    return keys


def _parse_turn(root: Section, path: Callable[[str], Path]) -> TurnSettings:
    secret = root.string("turn_shared_secret", None)
    secret_path = root.string("turn_shared_secret_path", None)
    if secret is not None and secret_path is not None:
        raise ConfigError(
            "turn_shared_secret_path", secret_path, "not set when turn_shared_secret is set"
        )
    if secret_path is not None:
        try:
            secret = path(secret_path).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(
                "turn_shared_secret_path", secret_path, f"a readable file ({e.strerror})"
            ) from None
    return TurnSettings(
        uris=tuple(root.string_list("turn_uris", [])),
        shared_secret=secret or None,
        username=root.string("turn_username", None),
        password=root.string("turn_password", None),
        user_lifetime_ms=root.duration_ms("turn_user_lifetime", 3_600_000),
        allow_guests=root.boolean("turn_allow_guests", True),
    )


def _optional_duration(root: Section, name: str, default: int | None) -> int | None:
    """A duration that may be null (null, or absent with a None default: no limit)."""
    if name in root.data and root.data[name] is None:
        return None
    if name not in root.data:
        return default
    return root.duration_ms(name, 0)


def _parse_accounts(root: Section) -> AccountsConfig:
    password = root.section("password_config")
    enabled = password.raw("enabled", True)
    if enabled not in (True, False, "only_for_reauth"):
        raise ConfigError(password.key("enabled"), enabled, 'true, false or "only_for_reauth"')
    pepper = password.raw("pepper", "")
    if not isinstance(pepper, str):
        raise ConfigError(password.key("pepper"), pepper, "a string")
    settings = AccountsConfig(
        bcrypt_rounds=root.integer("bcrypt_rounds", 12, minimum=4, maximum=31),
        password_login_enabled=enabled is True,
        password_reauth_enabled=enabled is not False,
        password_pepper=pepper,
        allow_guest_access=root.boolean("allow_guest_access", False),
        registration_requires_token=root.boolean("registration_requires_token", False),
        refreshable_access_token_lifetime_ms=_optional_duration(
            root, "refreshable_access_token_lifetime", 5 * 60_000
        ),
        refresh_token_lifetime_ms=_optional_duration(root, "refresh_token_lifetime", None),
        nonrefreshable_access_token_lifetime_ms=_optional_duration(
            root, "nonrefreshable_access_token_lifetime", None
        ),
        session_lifetime_ms=_optional_duration(root, "session_lifetime", None),
    )
    session = settings.session_lifetime_ms
    refreshable = settings.refreshable_access_token_lifetime_ms
    if (
        session is not None
        and refreshable is not None
        and refreshable > session
        and ("refreshable_access_token_lifetime" in root.data)
    ):
        raise ConfigError(
            "refreshable_access_token_lifetime",
            root.data["refreshable_access_token_lifetime"],
            "a lifetime no longer than session_lifetime",
        )
    return settings


def _parse_media(root: Section) -> MediaConfig:
    sizes = tuple(
        ThumbnailSize(
            width=entry.integer("width", minimum=1),
            height=entry.integer("height", minimum=1),
            method=entry.choice("method", ("crop", "scale"), "scale"),
        )
        for entry in root.sections("thumbnail_sizes", [])
    )
    retention = root.section("media_retention")
    limits = []
    for entry in root.sections("media_upload_limits", []):
        info_uri = entry.string("info_uri", None)
        if info_uri is not None and not info_uri.startswith(("http://", "https://")):
            raise ConfigError(entry.key("info_uri"), info_uri, "an http:// or https:// URL")
        for required in ("max_size", "time_period"):
            if entry.data.get(required) is None:
                raise MissingConfigError(entry.key(required), "a value")
        limits.append(
            MediaUploadLimit(
                max_bytes=entry.size("max_size", 0),
                time_period_ms=entry.duration_ms("time_period", 0),
                info_uri=info_uri,
                can_upgrade=entry.boolean("can_upgrade", False),
            )
        )
    # Larger periods first: a user far below the longest limit needs no other query.
    limits.sort(key=lambda limit: limit.time_period_ms, reverse=True)
    url_preview_enabled = root.boolean("url_preview_enabled", False)
    if url_preview_enabled and "url_preview_ip_range_blacklist" not in root.data:
        raise ConfigError(
            "url_preview_ip_range_blacklist",
            None,
            "an explicit list of IP ranges URL previews must never reach, when "
            "url_preview_enabled is true (as Synapse requires)",
        )
    url_blacklist = []
    for entry in root.sections("url_preview_url_blacklist", []):
        if not all(isinstance(v, str) for v in entry.data.values()):
            raise ConfigError(entry.key(""), entry.data, "a mapping of URL parts to patterns")
        url_blacklist.append({str(k): str(v) for k, v in entry.data.items()})
    prevent = root.string_list("prevent_media_downloads_from", [])
    return MediaConfig(
        max_image_pixels=root.size("max_image_pixels", 32 * 1024 * 1024),
        dynamic_thumbnails=root.boolean("dynamic_thumbnails", False),
        thumbnail_sizes=sizes or MediaConfig().thumbnail_sizes,
        enable_authenticated_media=root.boolean("enable_authenticated_media", True),
        unused_expiration_time_ms=root.duration_ms("unused_expiration_time", 24 * 3_600_000),
        max_pending_media_uploads=root.integer("max_pending_media_uploads", 5, minimum=1),
        local_media_lifetime_ms=_optional_duration(retention, "local_media_lifetime", None),
        remote_media_lifetime_ms=_optional_duration(retention, "remote_media_lifetime", None),
        upload_limits=tuple(limits),
        prevent_media_downloads_from=frozenset(prevent),
        url_preview_enabled=url_preview_enabled,
        url_preview_ip_range_blacklist=tuple(
            root.ip_networks("url_preview_ip_range_blacklist", [])
        ),
        url_preview_ip_range_whitelist=tuple(
            root.ip_networks("url_preview_ip_range_whitelist", [])
        ),
        url_preview_url_blacklist=tuple(url_blacklist),
        url_preview_accept_language=tuple(root.string_list("url_preview_accept_language", []))
        or ("en",),
        max_spider_size=root.size("max_spider_size", 10 * 1024 * 1024),
    )
