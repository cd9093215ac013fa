"""Matrix errors, as the HTTP layer sees them (defined in ``homeserver.errors``)."""

from homeserver.errors import (
    MatrixError,
    bad_json,
    forbidden,
    invalid_param,
    limit_exceeded,
    missing_param,
    missing_token,
    not_found,
    not_json,
    too_large,
    unknown_token,
    unrecognized,
)

__all__ = [
    "MatrixError",
    "bad_json",
    "forbidden",
    "invalid_param",
    "limit_exceeded",
    "missing_param",
    "missing_token",
    "not_found",
    "not_json",
    "too_large",
    "unknown_token",
    "unrecognized",
]
