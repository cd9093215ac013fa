"""State resolution: Hearth against Synapse on the same forked DAGs, room versions 1-12.

Each case builds a forked room (see ``dags.py``), resolves the branch states with
Synapse's ``synapse.state.v1`` / ``synapse.state.v2`` (v2.1 for v12) and with Hearth's
``homeserver.state.resolve.resolve_state``, and requires the same state map. The
intermediate merges inside a case are compared too. Every event ID is computed by
both sides and must match as well.
"""

from __future__ import annotations

import pytest

from tests.differential import hearth_side
from tests.differential import synapse_oracle as oracle
from tests.differential.dags import DagCase, build_case
from tests.differential.harness import (
    ROOM_VERSIONS,
    Tally,
    case_indices,
    case_rng,
    record,
    reproduce_hint,
    scaled,
)
from tests.differential.rooms import StateMap

SUITE = "state_res"
HERE = "test_state_resolution.py"
CASES_PER_VERSION = 150

pytestmark = pytest.mark.slow


def _diff(expected: StateMap, actual: StateMap) -> str:
    keys = sorted(set(expected) | set(actual))
    return "\n".join(
        f"    {key}: synapse={expected.get(key)} hearth={actual.get(key)}"
        for key in keys
        if expected.get(key) != actual.get(key)
    )


def _hearth_resolve(
    hearth_events: hearth_side.HearthEvents, state_sets: list[StateMap], readmit_rejected: bool
) -> StateMap:
    try:
        return hearth_side.resolve(hearth_events, state_sets, readmit_rejected=readmit_rejected)
    except Exception as e:  # a crash is a mismatch to report, with the seed
        return {("<hearth raised>", repr(e)): ""}


def _compare(
    tally: Tally,
    case: DagCase,
    hearth_events: hearth_side.HearthEvents,
    state_sets: list[StateMap],
    expected: StateMap,
    what: str,
    index: int,
) -> None:
    """Hearth as the spec says must give Synapse's answer, except for exactly the
    documented deviation ``never_readmits_rejected``: Synapse keeps events it once
    rejected out of the resolved state; the spec ("Rejected events", rooms/v2.md) has
    them "handled as usual by the algorithm". Hearth's ``readmit_rejected=False`` mode
    must then give Synapse's answer exactly.
    """
    tally.cases += 1
    actual = _hearth_resolve(hearth_events, state_sets, readmit_rejected=True)
    if actual != expected and case.rejected:
        compatible = _hearth_resolve(hearth_events, state_sets, readmit_rejected=False)
        if compatible == expected:
            tally.deviation("never_readmits_rejected")
            return
        what += " (readmit_rejected=False)"
        actual = compatible
    if actual != expected:
        tally.mismatches.append(
            f"{what} of case {index} differs:\n{_diff(expected, actual)}\n"
            f"  reproduce: {reproduce_hint(HERE, case.room.room_version, index)}\n"
            f"{case.describe()}"
        )
    elif set(state_sets[0].items()) != set(expected.items()):
        tally.accepted += 1


@pytest.mark.parametrize("version", ROOM_VERSIONS, ids=lambda v: f"v{v}")
def test_state_resolution_matches_synapse(version: str) -> None:
    tally = Tally(SUITE, version)
    for index in case_indices(version, scaled(CASES_PER_VERSION)):
        case = build_case(version, case_rng(SUITE, version, index))
        hearth_events = hearth_side.HearthEvents(version)
        for event in case.room.events.values():
            hearth_events.add(event)
        tally.mismatches += [
            f"{m}\n  reproduce: {reproduce_hint(HERE, version, index)}"
            for m in hearth_events.id_mismatches
        ]
        if case.rejected:
            tally.cases += 1
            expected = oracle.resolve(
                version, case.room.room_id, case.state_sets, case.synapse_events.all()
            )
            compatible = _hearth_resolve(hearth_events, case.state_sets, readmit_rejected=False)
            if compatible != expected:
                tally.mismatches.append(
                    f"resolution of case {index} with rejected events "
                    f"{case.rejected} (readmit_rejected=False) differs:\n"
                    f"{_diff(expected, compatible)}\n"
                    f"  reproduce: {reproduce_hint(HERE, version, index)}\n{case.describe()}"
                )
        for state_sets, expected in case.merges:
            _compare(tally, case, hearth_events, state_sets, expected, "merge", index)
        expected = oracle.resolve(
            version, case.room.room_id, case.state_sets, case.synapse_events.all()
        )
        _compare(tally, case, hearth_events, case.state_sets, expected, "resolution", index)
    record(tally)
    assert not tally.mismatches, tally.report()
