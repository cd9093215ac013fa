"""Typed reading of YAML values, each failure naming the key, the value and what was expected."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any


class ConfigError(Exception):
    """A config value is wrong. ``str()`` is the single line shown to the admin."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"config key '{key}' has value {shown}: expected {expected}")


class MissingConfigError(ConfigError):
    def __init__(self, key: str, expected: str) -> None:
        self.key = key
        self.value = None
        self.expected = expected
        Exception.__init__(self, f"config key '{key}' is missing: expected {expected}")


_MISSING: Any = object()

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)B?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_DURATION_RE = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w|y)?\s*$")
_DURATION_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 7 * 86_400_000,
    "y": 365 * 86_400_000,
}
_SERVER_NAME_RE = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]{2,45}\]|[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[A-Za-z0-9\-.]{1,255})(?::[0-9]{1,5})?$"
)


class Section:
    """A mapping of config values under a dotted key prefix."""

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        value = self.data.get(name, _MISSING)
        if value is _MISSING or (value is None and default is not _MISSING):
            if default is _MISSING:
                raise MissingConfigError(self.key(name), "a value")
            return default
        return value

    def string(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str) or not value:
            raise ConfigError(self.key(name), value, "a non-empty string")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), value, "true or false")
        return value

    def integer(
        self,
        name: str,
        default: Any = _MISSING,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> Any:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(name), value, _range_text("an integer", minimum, maximum))
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ConfigError(self.key(name), value, _range_text("an integer", minimum, maximum))
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise ConfigError(self.key(name), value, f"a number >= {minimum:g}")
        return float(value)

    def size(self, name: str, default: int) -> int:
        """A byte size: an integer or a string such as "50M" (Synapse's notation)."""
        value = self.raw(name, default)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str):
            match = _SIZE_RE.match(value)
            if match:
                return int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
        raise ConfigError(self.key(name), value, 'a size in bytes such as 52428800 or "50M"')

    def duration_ms(self, name: str, default: int) -> int:
        """A duration: milliseconds as an integer, or a string such as "1d" (Synapse's notation)."""
        value = self.raw(name, default)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str):
            match = _DURATION_RE.match(value)
            if match:
                return int(match.group(1)) * _DURATION_MS[match.group(2) or "ms"]
        raise ConfigError(
            self.key(name), value, 'a duration in milliseconds or a string such as "1d" or "30m"'
        )

    def string_list(self, name: str, default: Sequence[str]) -> list[str]:
        value = self.raw(name, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(self.key(name), value, "a list of strings")
        return list(value)

    def mapping(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, dict):
            raise ConfigError(self.key(name), value, "a mapping")
        return value

    def section(self, name: str, *, required: bool = False) -> Section:
        value = self.mapping(name, _MISSING if required else {})
        return Section(value, f"{self.prefix}{name}.")

    def sections(self, name: str, default: Sequence[Mapping[str, Any]] = ()) -> list[Section]:
        value = self.raw(name, list(default))
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(self.key(name), value, "a list of mappings")
        return [Section(item, f"{self.prefix}{name}[{i}].") for i, item in enumerate(value)]

    def choice(self, name: str, choices: Sequence[str], default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if value not in choices:
            raise ConfigError(self.key(name), value, "one of " + ", ".join(choices))
        return value

    def ip_networks(
        self, name: str, default: Sequence[str]
    ) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        networks = []
        for entry in self.string_list(name, default):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ConfigError(
                    self.key(name), entry, "IP ranges in CIDR notation such as 10.0.0.0/8"
                ) from None
        return networks


def is_valid_server_name(server_name: str) -> bool:
    if not _SERVER_NAME_RE.match(server_name):
        return False
    if ":" in server_name and not server_name.endswith("]"):
        port = int(server_name.rsplit(":", 1)[1])
        return 0 < port < 65536
    return True


def _range_text(kind: str, minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind} from {minimum} to {maximum}"
    if minimum is not None:
        return f"{kind} >= {minimum}"
    if maximum is not None:
        return f"{kind} <= {maximum}"
    return kind
