"""TURN server credentials for VoIP clients: ``GET /voip/turnServer``."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from homeserver.config.model import TurnSettings
from homeserver.errors import MatrixError


class VoipHandler:
    def __init__(self, config: TurnSettings, now_ms: Callable[[], int]) -> None:
        self.config = config
        self._now_ms = now_ms

    def get_turn_server(self, user_id: str, *, is_guest: bool = False) -> dict[str, Any]:
        config = self.config
        if is_guest and not config.allow_guests:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed")
        if not config.uris or config.user_lifetime_ms <= 0:
            return {}
        if config.shared_secret:
            # The TURN REST API convention (coturn's use-auth-secret): the username carries
            # its expiry, the password is an HMAC of it the TURN server can recompute.
            expiry = (self._now_ms() + config.user_lifetime_ms) // 1000
            username = f"{expiry}:{user_id}"
            mac = hmac.new(config.shared_secret.encode(), username.encode(), hashlib.sha1)
            password = base64.b64encode(mac.digest()).decode("ascii")
        elif config.username and config.password:
            username, password = config.username, config.password
        else:
            return {}
        return {
            "username": username,
            "password": password,
            "ttl": config.user_lifetime_ms // 1000,
            "uris": list(config.uris),
        }
