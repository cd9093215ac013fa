"""State resolution v1, v2 and v2.1, as pure functions over a ``StateResolutionSource``."""

from homeserver.state.resolve import resolve_state
from homeserver.state.source import InMemoryEventSource, StateResolutionSource

__all__ = ["InMemoryEventSource", "StateResolutionSource", "resolve_state"]
