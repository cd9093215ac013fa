"""The seam to other servers for end-to-end encryption, until federation lands.

The handlers hand everything that concerns users of another server to a ``RemoteKeys``:
key queries and claims (answered per server, or failed per server as the spec's
``failures`` maps say), to-device messages and device list changes to send out. The
federation issue provides the implementation that talks to other servers.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any, Protocol

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]


class RemoteServerUnavailable(Exception):
    """The server could not be asked; its users go under ``failures``."""


class RemoteKeys(Protocol):
    async def query_keys(
        self, server_name: str, device_keys: Mapping[str, list[str]], timeout_ms: int
    ) -> JsonDict:
        """The server's answer to a key query (``device_keys``, ``master_keys``,
        ``self_signing_keys``). Raises RemoteServerUnavailable."""
        ...

    async def claim_keys(
        self, server_name: str, one_time_keys: Mapping[str, Mapping[str, str]], timeout_ms: int
    ) -> JsonDict:
        """The server's answer to a claim (``one_time_keys``). Raises
        RemoteServerUnavailable."""
        ...

    async def send_to_device(
        self,
        server_name: str,
        sender: str,
        message_type: str,
        message_id: str,
        messages: Mapping[str, Mapping[str, JsonDict]],
    ) -> None:
        """Queue an m.direct_to_device EDU (user -> device or "*" -> content)."""
        ...

    async def device_list_changed(
        self, user_id: str, device_ids: Collection[str], destinations: Collection[str]
    ) -> None:
        """Queue m.device_list_update EDUs about a local user for the servers that share a
        room with them."""
        ...


class LocalOnlyRemoteKeys:
    """No federation yet: every other server is unavailable, and nothing is sent."""

    async def query_keys(
        self, server_name: str, device_keys: Mapping[str, list[str]], timeout_ms: int
    ) -> JsonDict:
        raise RemoteServerUnavailable(f"{server_name}: federation is not available")

    async def claim_keys(
        self, server_name: str, one_time_keys: Mapping[str, Mapping[str, str]], timeout_ms: int
    ) -> JsonDict:
        raise RemoteServerUnavailable(f"{server_name}: federation is not available")

    async def send_to_device(
        self,
        server_name: str,
        sender: str,
        message_type: str,
        message_id: str,
        messages: Mapping[str, Mapping[str, JsonDict]],
    ) -> None:
        logger.info(
            "to-device %s from %s for %s dropped: federation is not available",
            message_type,
            sender,
            server_name,
        )

    async def device_list_changed(
        self, user_id: str, device_ids: Collection[str], destinations: Collection[str]
    ) -> None:
        return None


def failure(error: Exception) -> JsonDict:
    """A ``failures`` entry for a server, in Synapse's shape."""
    return {"status": 503, "message": str(error)}
