"""The auth-graph facts of ``StateResolutionSource``'s default implementations."""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import HealthCheck, given, settings

from homeserver.state import InMemoryEventSource
from homeserver.state.source import auth_edges
from tests.unit.dag_builder import BOB, CHARLIE, POWER_LEVELS, DagBuilder
from tests.unit.test_state_res_properties import forked_rooms

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _ids(dag: DagBuilder, names: Iterable[str]) -> set[str]:
    return {dag.id(name) for name in names}


def _names(dag: DagBuilder, ids: Iterable[str]) -> set[str]:
    return {dag.name(event_id) for event_id in ids}


def _state_reset(version: str) -> tuple[DagBuilder, set[str], set[str]]:
    dag = DagBuilder(version)
    tip = dag.initial_room({BOB: 50})
    dag.power_levels("PL_BOB_ADMIN", dag.creator, {BOB: 100}, parent=tip)
    dag.topic("T_BOB", BOB, "bob's", parent="PL_BOB_ADMIN")
    dag.power_levels("PL_BY_BOB", BOB, {BOB: 100, CHARLIE: 50}, parent="T_BOB")
    full = dag.state_after("PL_BY_BOB")
    reset = full | {POWER_LEVELS: dag.id("IPOWER")}
    return dag, set(full.values()), set(reset.values())


def test_auth_chain_excludes_the_events_themselves() -> None:
    dag = DagBuilder("10")
    dag.initial_room()
    chain = dag.source().get_auth_chain([dag.id("IMB")])
    assert _names(dag, chain) == {"CREATE", "IMA", "IPOWER", "IJR"}
    assert _names(dag, dag.source().get_auth_chain([dag.id("CREATE")])) == set()


def test_auth_chain_in_v12_includes_the_create_event() -> None:
    # v12 events do not list the create event; the room ID names it.
    dag = DagBuilder("12")
    dag.initial_room()
    assert dag.id("CREATE") not in dag.events["IMB"].auth_event_ids
    assert dag.id("CREATE") in auth_edges(dag.events["IMB"])
    chain = dag.source().get_auth_chain([dag.id("IMB")])
    assert _names(dag, chain) == {"CREATE", "IMA", "IPOWER", "IJR"}


def test_auth_chain_skips_missing_events() -> None:
    dag = DagBuilder("10")
    dag.initial_room()
    source = InMemoryEventSource(event for name, event in dag.events.items() if name != "IPOWER")
    # IPOWER is missing: the walk cannot go through it, but IJR's other auth events
    # (create, IMA) are still reached.
    assert _names(dag, source.get_auth_chain([dag.id("IJR")]) - {dag.id("IPOWER")}) == {
        "CREATE",
        "IMA",
    }


def test_auth_chain_difference() -> None:
    dag, full, reset = _state_reset("10")
    difference = dag.source().get_auth_chain_difference([full, reset])
    # Chains include the states' own events: only PL_BY_BOB is not in both.
    assert _names(dag, difference) == {"PL_BY_BOB"}
    assert dag.source().get_auth_chain_difference([full]) == set()
    assert dag.source().get_auth_chain_difference([full, full, full]) == set()


def test_conflicted_subgraph() -> None:
    dag, _, _ = _state_reset("12")
    subgraph = dag.source().get_conflicted_subgraph(_ids(dag, ["PL_BY_BOB", "IPOWER"]))
    # Every auth path from PL_BY_BOB down to IPOWER: through PL_BOB_ADMIN, and
    # through Bob's join and the join rules (both cite IPOWER). The create event and
    # Alice's join are below IPOWER only, so they are not on such a path.
    assert _names(dag, subgraph) == {"PL_BY_BOB", "PL_BOB_ADMIN", "IMB", "IJR", "IPOWER"}


def test_conflicted_subgraph_of_unrelated_events_is_themselves() -> None:
    dag = DagBuilder("12")
    tip = dag.initial_room()
    dag.topic("T1", BOB, "one", parent=tip)
    dag.topic("T2", CHARLIE, "two", parent=tip)
    subgraph = dag.source().get_conflicted_subgraph(_ids(dag, ["T1", "T2"]))
    assert _names(dag, subgraph) == {"T1", "T2"}


# --- against the definitions, on random rooms -----------------------------------------


def _naive_chain(source: InMemoryEventSource, event_id: str) -> set[str]:
    """The auth chain by its plain recursive definition: no pruning, no batching."""
    chain: set[str] = set()
    todo = list(auth_edges(source.get_events([event_id])[event_id]))
    while todo:
        current = todo.pop()
        if current in chain:
            continue
        chain.add(current)
        found = source.get_events([current]).get(current)
        if found is not None:
            todo.extend(auth_edges(found))
    return chain


@SETTINGS
@given(forked_rooms())
def test_auth_chain_difference_matches_the_definition(room: tuple[DagBuilder, list[str]]) -> None:
    dag, tips = room
    source = dag.source()
    state_sets = [set(dag.state_after(tip).values()) for tip in tips]
    full_chains = [
        set(state_set).union(*(_naive_chain(source, e) for e in state_set))
        for state_set in state_sets
    ]
    expected = set().union(*full_chains) - set(full_chains[0]).intersection(*full_chains[1:])
    assert source.get_auth_chain_difference(state_sets) == expected


@SETTINGS
@given(forked_rooms())
def test_conflicted_subgraph_matches_the_definition(room: tuple[DagBuilder, list[str]]) -> None:
    dag, tips = room
    source = dag.source()
    states = [dag.state_after(tip) for tip in tips]
    conflicted = {
        event_id
        for key in set().union(*states)
        if len({state.get(key) for state in states}) > 1
        for state in states
        if (event_id := state.get(key)) is not None
    }
    chains = {event.event_id: _naive_chain(source, event.event_id) for event in dag.events.values()}
    # x is on a path between conflicted events: x is, or is below, one of them, and x
    # is, or is above, one of them.
    below = conflicted.union(*(chains[c] for c in conflicted))
    expected = {x for x in below if x in conflicted or any(c in chains[x] for c in conflicted)}
    assert source.get_conflicted_subgraph(conflicted) == expected
