"""The entry point of state resolution: pick the room version's algorithm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from homeserver.events.model import StateKey
from homeserver.room_versions import RoomVersion, StateResAlgorithm
from homeserver.state.source import StateResolutionSource
from homeserver.state.v1 import resolve_v1
from homeserver.state.v2 import resolve_v2


def resolve_state(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    source: StateResolutionSource,
    *,
    readmit_rejected: bool = False,
) -> dict[StateKey, str]:
    """Resolve the room states ``state_sets`` ((type, state_key) -> event ID) into one.

    The events named by the state sets, and their auth chains, come from ``source``.
    ``readmit_rejected`` only matters to v2 and v2.1 (see ``resolve_v2``): by default
    previously rejected events stay out, as Synapse does.
    """
    if not state_sets:
        return {}
    if len(state_sets) == 1:
        return dict(state_sets[0])
    algorithm = room_version.state_res
    if algorithm is StateResAlgorithm.V1:
        return resolve_v1(room_version, state_sets, source)
    if algorithm is StateResAlgorithm.V2 or algorithm is StateResAlgorithm.V2_1:
        return resolve_v2(room_version, state_sets, source, readmit_rejected=readmit_rejected)
    raise ValueError(f"unknown state resolution algorithm {algorithm!r}")
