"""``GET /_matrix/client/versions``."""

from __future__ import annotations

from typing import Any

from rest.request import HttpRequest
from rest.router import Router

# The spec releases whose Client-Server API Hearth serves.
SUPPORTED_SPEC_VERSIONS = (
    "r0.0.1",
    "r0.1.0",
    "r0.2.0",
    "r0.3.0",
    "r0.4.0",
    "r0.5.0",
    "r0.6.0",
    "r0.6.1",
    *(f"v1.{minor}" for minor in range(1, 20)),
)

# Unstable features (MSCs) Hearth implements, as advertised to clients.
UNSTABLE_FEATURES: dict[str, bool] = {}


def register(router: Router) -> None:
    async def get_versions(request: HttpRequest) -> dict[str, Any]:
        return {
            "versions": list(SUPPORTED_SPEC_VERSIONS),
            "unstable_features": dict(UNSTABLE_FEATURES),
        }

    router.add("GET", "/_matrix/client/versions", get_versions)
