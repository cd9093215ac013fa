"""Room aliases and the room directory: ``/directory/room``, ``/directory/list/room``,
``/rooms/{roomId}/aliases`` and ``/publicRooms``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.directory import DirectoryHandler, PublicRoomsQuery
from rest.errors import invalid_param, missing_param
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(
    router: Router, directory: DirectoryHandler, *, allow_public_rooms_without_auth: bool
) -> None:
    async def get_alias(request: HttpRequest) -> dict[str, Any]:
        mapping = await directory.resolve_alias(request.path_params["roomAlias"])
        return {"room_id": mapping.room_id, "servers": mapping.servers}

    async def put_alias(request: HttpRequest) -> dict[str, Any]:
        body = request.json()
        if "room_id" not in body:
            raise missing_param("Missing room_id")
        requester = request.requester
        await directory.create_alias(
            requester.user_id,
            request.path_params["roomAlias"],
            body["room_id"],
            app_service=requester.app_service_id is not None,
        )
        return {}

    async def delete_alias(request: HttpRequest) -> dict[str, Any]:
        await directory.delete_alias(request.requester.user_id, request.path_params["roomAlias"])
        return {}

    async def get_room_aliases(request: HttpRequest) -> dict[str, Any]:
        aliases = await directory.get_room_aliases(
            request.requester.user_id, request.path_params["roomId"]
        )
        return {"aliases": aliases}

    async def get_visibility(request: HttpRequest) -> dict[str, Any]:
        return {"visibility": await directory.get_room_visibility(request.path_params["roomId"])}

    async def put_visibility(request: HttpRequest) -> dict[str, Any]:
        body = request.json()
        requester = request.requester
        await directory.set_room_visibility(
            requester.user_id,
            request.path_params["roomId"],
            # A missing visibility publishes, as Synapse does.
            body.get("visibility", "public"),
            is_guest=requester.is_guest,
        )
        return {}

    async def get_public_rooms(request: HttpRequest) -> dict[str, Any]:
        # Read now so a bad value is an error, though only the main list is served.
        request.query_bool("include_all_networks")
        request.query_string("third_party_instance_id")
        query = PublicRoomsQuery(
            limit=request.query_int("limit"),
            since=request.query_string("since"),
            server=request.query_string("server"),
        )
        return await directory.get_public_rooms(query)

    async def post_public_rooms(request: HttpRequest) -> dict[str, Any]:
        body = request.json()
        limit = body.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise invalid_param("limit must be an integer")
        since = _optional_string(body, "since")
        _optional_string(body, "third_party_instance_id")
        include_all = body.get("include_all_networks", False)
        if not isinstance(include_all, bool):
            raise invalid_param("include_all_networks must be a boolean")
        search_filter = body.get("filter") or {}
        if not isinstance(search_filter, dict):
            raise invalid_param("filter must be an object")
        term = _optional_string(search_filter, "generic_search_term", "filter.")
        room_types = search_filter.get("room_types")
        if room_types is not None and (
            not isinstance(room_types, list)
            or not all(t is None or isinstance(t, str) for t in room_types)
        ):
            raise invalid_param("filter.room_types must be a list of strings or nulls")
        query = PublicRoomsQuery(
            limit=limit,
            since=since,
            generic_search_term=term,
            room_types=room_types,
            server=request.query_string("server"),
        )
        return await directory.get_public_rooms(query)

    alias_paths = client_patterns("/directory/room/{roomAlias}")
    router.add("GET", alias_paths, get_alias)
    router.add("PUT", alias_paths, put_alias, auth=Auth.USER)
    router.add("DELETE", alias_paths, delete_alias, auth=Auth.USER)
    router.add("GET", client_patterns("/rooms/{roomId}/aliases"), get_room_aliases, auth=Auth.USER)
    list_paths = client_patterns("/directory/list/room/{roomId}")
    router.add("GET", list_paths, get_visibility)
    router.add("PUT", list_paths, put_visibility, auth=Auth.USER)
    public_paths = client_patterns("/publicRooms")
    router.add(
        "GET",
        public_paths,
        get_public_rooms,
        auth=Auth.OPTIONAL if allow_public_rooms_without_auth else Auth.USER,
    )
    router.add("POST", public_paths, post_public_rooms, auth=Auth.USER)


def _optional_string(body: dict[str, Any], key: str, prefix: str = "") -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid_param(f"{prefix}{key} must be a string")
    return value
