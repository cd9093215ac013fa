"""Matrix errors: an HTTP status, an ``errcode`` and a human-readable ``error``.

Raised by handlers and the HTTP layer alike; the HTTP layer turns them into responses.
"""

from __future__ import annotations

from typing import Any


class MatrixError(Exception):
    """Raised anywhere below the HTTP layer; turned into a Matrix error JSON response."""

    def __init__(
        self,
        status: int,
        errcode: str,
        error: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{status} {errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error
        self.headers = headers or {}
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "error": self.error, **self.extra}


def unrecognized(error: str = "Unrecognized request", status: int = 404) -> MatrixError:
    return MatrixError(status, "M_UNRECOGNIZED", error)


def not_json(error: str = "Content not JSON.") -> MatrixError:
    return MatrixError(400, "M_NOT_JSON", error)


def bad_json(error: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", error)


def invalid_param(error: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", error)


def missing_param(error: str) -> MatrixError:
    return MatrixError(400, "M_MISSING_PARAM", error)


def too_large(error: str = "Request body too large") -> MatrixError:
    return MatrixError(413, "M_TOO_LARGE", error)


def forbidden(error: str) -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", error)


def missing_token() -> MatrixError:
    return MatrixError(401, "M_MISSING_TOKEN", "Missing access token")


def unknown_token(soft_logout: bool = False) -> MatrixError:
    return MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown access token", soft_logout=soft_logout)


def limit_exceeded(retry_after_ms: int) -> MatrixError:
    return MatrixError(
        429,
        "M_LIMIT_EXCEEDED",
        "Too many requests",
        headers={"Retry-After": str(max(1, (retry_after_ms + 999) // 1000))},
        retry_after_ms=retry_after_ms,
    )


def not_found(error: str) -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", error)
