"""What the inbound path fetches from other servers, over the federation client."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from federation.client import FederationClient, federation_path
from homeserver.events.model import JsonDict


class RemoteEventFetcher:
    def __init__(self, client: FederationClient) -> None:
        self.client = client

    async def get_missing_events(
        self,
        destination: str,
        room_id: str,
        earliest_events: Sequence[str],
        latest_events: Sequence[str],
        limit: int,
        min_depth: int,
    ) -> list[JsonDict]:
        body = await self.client.post_json(
            destination,
            federation_path("/_matrix/federation/v1/get_missing_events/%s", room_id),
            data={
                "earliest_events": list(earliest_events),
                "latest_events": list(latest_events),
                "limit": limit,
                "min_depth": min_depth,
            },
        )
        return _pdus(body, "events")

    async def get_event(self, destination: str, event_id: str) -> JsonDict | None:
        body = await self.client.get_json(
            destination, federation_path("/_matrix/federation/v1/event/%s", event_id)
        )
        pdus = _pdus(body, "pdus")
        return pdus[0] if pdus else None

    async def get_state_ids(
        self, destination: str, room_id: str, event_id: str
    ) -> tuple[list[str], list[str]]:
        body = await self.client.get_json(
            destination,
            federation_path("/_matrix/federation/v1/state_ids/%s", room_id),
            args={"event_id": event_id},
        )
        if not isinstance(body, dict):
            return [], []
        return _strings(body.get("pdu_ids")), _strings(body.get("auth_chain_ids"))


def _pdus(body: Any, key: str) -> list[JsonDict]:
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        return []
    return [p for p in body[key] if isinstance(p, dict)]


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
