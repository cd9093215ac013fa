"""Event authorisation rules, room versions 1-12: pure functions, no I/O."""

from homeserver.auth.errors import AuthError
from homeserver.auth.power_levels import (
    CREATOR_POWER_LEVEL,
    get_creators,
    get_named_level,
    get_power_level,
    get_required_power_level,
    get_user_power_level,
)
from homeserver.auth.rules import check_auth_events_shape, check_auth_rules
from homeserver.auth.selection import auth_types_for_event, select_auth_events

__all__ = [
    "CREATOR_POWER_LEVEL",
    "AuthError",
    "auth_types_for_event",
    "check_auth_events_shape",
    "check_auth_rules",
    "get_creators",
    "get_named_level",
    "get_power_level",
    "get_required_power_level",
    "get_user_power_level",
    "select_auth_events",
]
