"""Homeserver configuration: YAML with Synapse's key names."""

from homeserver.config.loader import load_config, parse_config
from homeserver.config.model import HomeserverConfig, ListenerConfig, RatelimitSettings
from homeserver.config.reader import ConfigError

__all__ = [
    "ConfigError",
    "HomeserverConfig",
    "ListenerConfig",
    "RatelimitSettings",
    "load_config",
    "parse_config",
]
