"""The parsed homeserver configuration.

Key names follow Synapse's ``homeserver.yaml`` wherever the concept is the same, so an
admin's existing file mostly just works. ``docs/configuration.md`` documents every key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.engine import DatabaseConfig

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Resource names Hearth serves on an http listener.
RESOURCE_NAMES = ("client", "federation", "keys", "media", "metrics", "health")
# Names Synapse accepts that Hearth does not serve (yet); accepted with a warning.
SYNAPSE_ONLY_RESOURCE_NAMES = ("openid", "static", "replication", "consent", "webclient")


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    port: int
    bind_addresses: tuple[str, ...]
    type: str  # "http" or "metrics"
    tls: bool
    x_forwarded: bool
    resources: frozenset[str]


@dataclass(frozen=True, slots=True)
class RatelimitSettings:
    per_second: float
    burst_count: float


@dataclass(frozen=True, slots=True)
class FederationRatelimitSettings:
    window_size_ms: int
    sleep_limit: int
    sleep_delay_ms: int
    reject_limit: int
    concurrent: int


@dataclass(frozen=True, slots=True)
class TrustedKeyServer:
    server_name: str
    verify_keys: Mapping[str, str]  # key_id -> unpadded base64 public key
    accept_keys_insecurely: bool


@dataclass(frozen=True, slots=True)
class OldSigningKey:
    key: str  # unpadded base64 public key
    expired_ts: int


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """Synapse's ``turn_*`` keys: the TURN server handed to VoIP clients."""

    uris: tuple[str, ...] = ()
    shared_secret: str | None = None
    username: str | None = None
    password: str | None = None
    user_lifetime_ms: int = 3_600_000
    allow_guests: bool = True


@dataclass(frozen=True, slots=True)
class AccountsConfig:
    """Passwords, guests, registration tokens and token lifetimes (Synapse's keys)."""

    bcrypt_rounds: int = 12
    # password_config.enabled: true, false, or "only_for_reauth" (UIA only, no /login)
    password_login_enabled: bool = True
    password_reauth_enabled: bool = True
    password_pepper: str = ""
    allow_guest_access: bool = False
    registration_requires_token: bool = False
    # None: refresh tokens are not issued
    refreshable_access_token_lifetime_ms: int | None = 5 * 60_000
    refresh_token_lifetime_ms: int | None = None
    nonrefreshable_access_token_lifetime_ms: int | None = None
    session_lifetime_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ThumbnailSize:
    width: int
    height: int
    method: str  # "crop" or "scale"


# Synapse's default thumbnail_sizes.
DEFAULT_THUMBNAIL_SIZES = (
    ThumbnailSize(32, 32, "crop"),
    ThumbnailSize(96, 96, "crop"),
    ThumbnailSize(320, 240, "scale"),
    ThumbnailSize(640, 480, "scale"),
    ThumbnailSize(800, 600, "scale"),
)


@dataclass(frozen=True, slots=True)
class MediaUploadLimit:
    """One entry of ``media_upload_limits``: at most max_bytes per user per time period."""

    max_bytes: int
    time_period_ms: int
    info_uri: str | None = None
    can_upgrade: bool = False


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """The media repository's keys (Synapse's names); media_store_path and max_upload_size
    stay on HomeserverConfig."""

    max_image_pixels: int = 32 * 1024 * 1024
    dynamic_thumbnails: bool = False
    thumbnail_sizes: tuple[ThumbnailSize, ...] = DEFAULT_THUMBNAIL_SIZES
    enable_authenticated_media: bool = True
    unused_expiration_time_ms: int = 24 * 3_600_000
    max_pending_media_uploads: int = 5
    local_media_lifetime_ms: int | None = None
    remote_media_lifetime_ms: int | None = None
    upload_limits: tuple[MediaUploadLimit, ...] = ()
    prevent_media_downloads_from: frozenset[str] = frozenset()
    url_preview_enabled: bool = False
    url_preview_ip_range_blacklist: tuple[IPNetwork, ...] = ()
    url_preview_ip_range_whitelist: tuple[IPNetwork, ...] = ()
    # Each entry maps urlsplit() attribute names to a glob, or a regex starting with ^.
    url_preview_url_blacklist: tuple[Mapping[str, str], ...] = ()
    url_preview_accept_language: tuple[str, ...] = ("en",)
    max_spider_size: int = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PresenceConfig:
    """Synapse's ``presence`` section: whether presence is served, and its timers."""

    enabled: bool = True
    idle_timeout_ms: int = 5 * 60 * 1000
    sync_online_timeout_ms: int = 30 * 1000
    last_active_granularity_ms: int = 60 * 1000


@dataclass(frozen=True)
class HomeserverConfig:
    config_path: Path | None
    server_name: str
    public_baseurl: str
    listeners: tuple[ListenerConfig, ...]
    database: DatabaseConfig
    signing_key_path: Path
    old_signing_keys: Mapping[str, OldSigningKey]
    key_refresh_interval_ms: int
    tls_certificate_path: Path | None
    tls_private_key_path: Path | None
    log_config: Path | None
    enable_registration: bool
    enable_registration_without_verification: bool
    registration_shared_secret: str | None
    media_store_path: Path
    max_upload_size: int
    trusted_key_servers: tuple[TrustedKeyServer, ...]
    federation_verify_certificates: bool
    ip_range_blacklist: tuple[IPNetwork, ...]
    ip_range_whitelist: tuple[IPNetwork, ...]
    ratelimits: Mapping[str, RatelimitSettings]
    rc_federation: FederationRatelimitSettings
    default_room_version: str
    app_service_config_files: tuple[Path, ...]
    serve_server_wellknown: bool
    extra_well_known_client_content: Mapping[str, Any]
    ignored_keys: tuple[str, ...] = field(default=())
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    # Room directory and aliases.
    require_membership_for_aliases: bool = True
    enable_room_list_search: bool = True
    allow_public_rooms_without_auth: bool = False
    # Serve the room directory to other servers (GET/POST /_matrix/federation/v1/publicRooms).
    allow_public_rooms_over_federation: bool = False
    # Profile changes clients may make (also reported by /capabilities).
    enable_set_displayname: bool = True
    enable_set_avatar_url: bool = True
    turn: TurnSettings = field(default_factory=TurnSettings)
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    # Synapse's federation_domain_whitelist: the only servers federated with (None: any).
    federation_domain_whitelist: tuple[str, ...] | None = None
