"""``POST /user/{userId}/filter`` and ``GET /user/{userId}/filter/{filterId}``."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.filters import FilterHandler
from rest.request import HttpRequest
from rest.router import Auth, Router, client_patterns


def register(router: Router, filters: FilterHandler) -> None:
    async def create_filter(request: HttpRequest) -> dict[str, Any]:
        filter_id = await filters.create_filter(
            request.requester.user_id, request.path_params["userId"], request.json()
        )
        return {"filter_id": filter_id}

    async def get_filter(request: HttpRequest) -> dict[str, Any]:
        return await filters.get_filter_json(
            request.requester.user_id,
            request.path_params["userId"],
            request.path_params["filterId"],
        )

    router.add("POST", client_patterns("/user/{userId}/filter"), create_filter, auth=Auth.USER)
    router.add(
        "GET", client_patterns("/user/{userId}/filter/{filterId}"), get_filter, auth=Auth.USER
    )
