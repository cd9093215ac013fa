"""Outbound federation queries, for the handlers' remote seams: another server's users'
profiles (``/query/profile``), room directory (``/publicRooms``) and closest events by
time (``/timestamp_to_event``). (Remote aliases: federation/membership.py.)

A remote answer with an error status is passed on to the client with its status and
errcode (as Synapse); a server that cannot be reached, or answers with nonsense, is
502 M_UNKNOWN.
"""

from __future__ import annotations

import logging
from typing import Any

from federation.client import FederationClient, FederationError, HttpResponseError, federation_path
from homeserver.errors import MatrixError
from homeserver.handlers.directory import PublicRoomsQuery

logger = logging.getLogger(__name__)

PREFIX = "/_matrix/federation/v1"


def _proxied(e: FederationError, what: str) -> MatrixError:
    if isinstance(e, HttpResponseError) and 400 <= e.status < 500:
        return MatrixError(e.status, e.errcode or "M_UNKNOWN", e.error or what)
    logger.info("%s: %s", what, e)
    return MatrixError(502, "M_UNKNOWN", what)


def _bad_answer(what: str) -> MatrixError:
    return MatrixError(502, "M_UNKNOWN", f"{what}: the server's answer is malformed")


class FederationQueries:
    def __init__(self, client: FederationClient) -> None:
        self.client = client

    async def query_profile(self, user_id: str, server: str, field: str | None) -> dict[str, Any]:
        args = {"user_id": user_id}
        if field is not None:
            args["field"] = field
        what = f"Failed to fetch the profile of {user_id}"
        try:
            body = await self.client.get_json(server, PREFIX + "/query/profile", args=args)
        except FederationError as e:
            raise _proxied(e, what) from None
        if not isinstance(body, dict):
            raise _bad_answer(what)
        # Unset fields may come as null (the spec allows either): leave them out.
        return {k: v for k, v in body.items() if v is not None}

    async def public_rooms(self, server: str, query: PublicRoomsQuery) -> dict[str, Any]:
        what = f"Failed to fetch the room list of {server}"
        path = PREFIX + "/publicRooms"
        try:
            if query.generic_search_term is not None or query.room_types is not None:
                search: dict[str, Any] = {}
                if query.generic_search_term is not None:
                    search["generic_search_term"] = query.generic_search_term
                if query.room_types is not None:
                    search["room_types"] = query.room_types
                data: dict[str, Any] = {"filter": search}
                if query.limit is not None:
                    data["limit"] = query.limit
                if query.since is not None:
                    data["since"] = query.since
                body = await self.client.post_json(server, path, data=data)
            else:
                args: dict[str, str] = {}
                if query.limit is not None:
                    args["limit"] = str(query.limit)
                if query.since is not None:
                    args["since"] = query.since
                body = await self.client.get_json(server, path, args=args or None)
        except FederationError as e:
            raise _proxied(e, what) from None
        if not isinstance(body, dict) or not isinstance(body.get("chunk"), list):
            raise _bad_answer(what)
        return body

    async def timestamp_to_event(
        self, server: str, room_id: str, timestamp: int, backwards: bool
    ) -> tuple[str, int] | None:
        """The event ``server`` finds closest to ``timestamp``; None if it finds none or
        cannot be asked."""
        try:
            body = await self.client.get_json(
                server,
                federation_path(PREFIX + "/timestamp_to_event/%s", room_id),
                args={"ts": str(timestamp), "dir": "b" if backwards else "f"},
            )
        except FederationError as e:
            logger.info("timestamp_to_event on %s failed: %s", server, e)
            return None
        event_id = body.get("event_id") if isinstance(body, dict) else None
        ts = body.get("origin_server_ts") if isinstance(body, dict) else None
        if not isinstance(event_id, str) or not isinstance(ts, int) or isinstance(ts, bool):
            return None
        return event_id, ts
