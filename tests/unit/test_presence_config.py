"""The ``presence`` config section (Synapse's keys)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config.loader import parse_config
from homeserver.config.model import PresenceConfig
from homeserver.config.reader import ConfigError

BASE: dict[str, Any] = {
    "server_name": "hs.test",
    "listeners": [],
    "database": {"name": "sqlite3", "args": {"database": ":memory:"}},
}


def presence(tmp_path: Path, **extra: Any) -> PresenceConfig:
    return parse_config({**BASE, **extra}, tmp_path).presence


def test_defaults(tmp_path: Path) -> None:
    assert presence(tmp_path) == PresenceConfig(True, 300_000, 30_000, 60_000)


def test_keys_and_durations(tmp_path: Path) -> None:
    config = presence(
        tmp_path, presence={"enabled": False, "idle_timeout": "10m", "sync_online_timeout": "45s"}
    )
    assert config == PresenceConfig(False, 600_000, 45_000, 60_000)
    # Synapse's older top-level switch still works, and presence.enabled wins over it.
    assert presence(tmp_path, use_presence=False).enabled is False
    assert presence(tmp_path, use_presence=False, presence={"enabled": True}).enabled is True


@pytest.mark.parametrize(
    "section",
    [
        {"enabled": "yes"},
        {"idle_timeout": "30s"},  # not longer than last_active_granularity
        {"sync_online_timeout": 0},
        {"last_active_granularity": "soon"},
    ],
)
def test_bad_values_are_one_line_errors(tmp_path: Path, section: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as raised:
        presence(tmp_path, presence=section)
    assert "presence." in str(raised.value) and "\n" not in str(raised.value)
