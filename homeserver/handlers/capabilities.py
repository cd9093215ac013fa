"""What this server lets clients do: ``GET /capabilities``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.room_versions import KNOWN_ROOM_VERSIONS


@dataclass(frozen=True)
class CapabilitiesHandler:
    default_room_version: str
    change_password_enabled: bool = True
    set_displayname_enabled: bool = True
    set_avatar_url_enabled: bool = True

    def get_capabilities(self) -> dict[str, Any]:
        profile_fields: dict[str, Any] = {"enabled": True}
        disallowed = [
            name
            for name, enabled in (
                ("displayname", self.set_displayname_enabled),
                ("avatar_url", self.set_avatar_url_enabled),
            )
            if not enabled
        ]
        if disallowed:
            profile_fields["disallowed"] = disallowed
        return {
            "capabilities": {
                "m.room_versions": {
                    "default": self.default_room_version,
                    "available": {
                        version.identifier: version.disposition.value
                        for version in KNOWN_ROOM_VERSIONS.values()
                    },
                },
                "m.change_password": {"enabled": self.change_password_enabled},
                "m.set_displayname": {"enabled": self.set_displayname_enabled},
                "m.set_avatar_url": {"enabled": self.set_avatar_url_enabled},
                "m.profile_fields": profile_fields,
                # Neither third-party identifiers nor login tokens are served (yet).
                "m.3pid_changes": {"enabled": False},
                "m.get_login_token": {"enabled": False},
            }
        }
