"""State resolution on hand-built DAGs: the classic races, with exact expected states.

Each case builds a room, forks it, and resolves the states at the branch tips. The
v2 cases run on several v2 room versions; the v2.1 cases (rooms/v12.md) on room 12,
with the v2 outcome of the same DAG shown on room 11 for contrast; the v1 cases on
room 1.
"""

from __future__ import annotations

import pytest

from tests.unit.dag_builder import (
    BOB,
    CHARLIE,
    JOIN_RULES,
    POWER_LEVELS,
    TOPIC,
    ZARA,
    DagBuilder,
    member_key,
)

V2_VERSIONS = ["2", "6", "10", "11"]
ALL_V2_FAMILY = [*V2_VERSIONS, "12"]


def _with(base: dict, **changes: str) -> dict:
    return base | changes


def _base_state(dag: DagBuilder, tip: str) -> dict:
    return dag.named(dag.state_after(tip))


# --- a ban racing a power level change ------------------------------------------------


def _ban_vs_power_levels(dag: DagBuilder) -> tuple[str, str]:
    tip = dag.initial_room({BOB: 50})
    # Alice demotes Bob while Bob, still a moderator on his branch, bans Charlie.
    dag.power_levels("PL_DEMOTE", dag.creator, {BOB: 0}, parent=tip)
    dag.member("BAN", BOB, CHARLIE, "ban", parent=tip)
    return "PL_DEMOTE", "BAN"


@pytest.mark.parametrize("version", ALL_V2_FAMILY)
def test_ban_racing_power_level_change_v2(version: str) -> None:
    dag = DagBuilder(version)
    a, b = _ban_vs_power_levels(dag)
    expected = _base_state(dag, "IMC") | {POWER_LEVELS: "PL_DEMOTE"}
    assert dag.resolve(a, b) == expected
    assert dag.resolve(b, a) == expected


def test_ban_racing_power_level_change_v1() -> None:
    dag = DagBuilder("1")
    a, b = _ban_vs_power_levels(dag)
    # v1: the power levels resolve first (lowest depth first, each authorising the
    # next), then the member conflict is checked against Bob's demotion.
    expected = _base_state(dag, "IMC") | {POWER_LEVELS: "PL_DEMOTE"}
    assert dag.resolve(a, b) == expected


@pytest.mark.parametrize("version", ALL_V2_FAMILY)
def test_ban_by_a_user_demoted_later_on_the_same_branch_is_undone(version: str) -> None:
    # Bob bans Charlie, then Alice demotes Bob on the same branch; the other branch
    # has Charlie's topic. The demotion does not cite the ban, so the power ordering
    # puts Alice's demotion first, and the ban then fails against it.
    dag = DagBuilder(version)
    tip = dag.initial_room({BOB: 50})
    topics_open = {"events": {"m.room.topic": 0}}
    dag.power_levels("PL_OPEN", dag.creator, {BOB: 50}, parent=tip, extra=topics_open)
    dag.member("BAN", BOB, CHARLIE, "ban", parent="PL_OPEN")
    dag.power_levels("PL_DEMOTE", dag.creator, {BOB: 0}, parent="BAN", extra=topics_open)
    dag.topic("TOPIC_C", CHARLIE, "charlie's", parent="PL_OPEN")
    expected = _base_state(dag, "PL_OPEN") | {POWER_LEVELS: "PL_DEMOTE", TOPIC: "TOPIC_C"}
    assert dag.resolve("PL_DEMOTE", "TOPIC_C") == expected
    assert dag.resolve("TOPIC_C", "PL_DEMOTE") == expected


# --- concurrent topic changes ---------------------------------------------------------


def _concurrent_topics(dag: DagBuilder) -> None:
    tip = dag.initial_room({BOB: 50})
    dag.topic("T0", dag.creator, "zero", parent=tip)
    dag.topic("T_ALICE", dag.creator, "alice's", parent="T0", ts=5000)
    dag.topic("T_BOB", BOB, "bob's", parent="T0", ts=6000)


@pytest.mark.parametrize("version", ALL_V2_FAMILY)
def test_concurrent_topics_later_timestamp_wins_v2(version: str) -> None:
    dag = DagBuilder(version)
    _concurrent_topics(dag)
    expected = _base_state(dag, "T0") | {TOPIC: "T_BOB"}
    assert dag.resolve("T_ALICE", "T_BOB") == expected
    assert dag.resolve("T_BOB", "T_ALICE") == expected


@pytest.mark.parametrize("version", ALL_V2_FAMILY)
def test_topic_based_on_newer_power_levels_wins_v2(version: str) -> None:
    # Mainline ordering: a topic authorised by a later power levels event is applied
    # after one authorised by an earlier one, whatever the timestamps say.
    dag = DagBuilder(version)
    tip = dag.initial_room({BOB: 50})
    dag.topic("T0", dag.creator, "zero", parent=tip)
    dag.power_levels("PL2", dag.creator, {BOB: 60}, parent="T0", ts=3000)
    dag.topic("T_NEW_PL", BOB, "after PL2", parent="PL2", ts=4000)
    dag.topic("T_OLD_PL", dag.creator, "late clock", parent="T0", ts=9000)
    expected = _base_state(dag, "T0") | {POWER_LEVELS: "PL2", TOPIC: "T_NEW_PL"}
    assert dag.resolve("T_NEW_PL", "T_OLD_PL") == expected
    assert dag.resolve("T_OLD_PL", "T_NEW_PL") == expected


def test_concurrent_topics_v1_highest_depth_wins() -> None:
    dag = DagBuilder("1")
    tip = dag.initial_room({BOB: 50})
    dag.topic("T0", dag.creator, "zero", parent=tip)
    dag.topic("T_ALICE", dag.creator, "alice's", parent="T0", ts=9000)
    dag.topic("T_BOB1", BOB, "bob's", parent="T0", ts=1)
    dag.topic("T_BOB2", BOB, "bob's again", parent="T_BOB1", ts=2)
    expected = _base_state(dag, "T0") | {TOPIC: "T_BOB2"}
    assert dag.resolve("T_ALICE", "T_BOB2") == expected


def test_concurrent_topics_v1_same_depth_lowest_sha1_wins() -> None:
    dag = DagBuilder("1")
    tip = dag.initial_room({BOB: 50})
    dag.topic("T0", dag.creator, "zero", parent=tip)
    dag.topic("T_ALICE", dag.creator, "alice's", parent="T0")
    dag.topic("T_BOB", BOB, "bob's", parent="T0")
    # sha1("$T_BOB:a.example") = 608e8f... < sha1("$T_ALICE:a.example") = 9963c8...
    assert dag.resolve("T_ALICE", "T_BOB")[TOPIC] == "T_BOB"
    assert dag.resolve("T_BOB", "T_ALICE")[TOPIC] == "T_BOB"


# --- a join racing a join rules change ------------------------------------------------


def _join_vs_join_rules(dag: DagBuilder) -> None:
    tip = dag.initial_room({BOB: 50})
    dag.join_rules("JR_INVITE", dag.creator, "invite", parent=tip)
    dag.join("ZARA_JOIN", ZARA, parent=tip)


@pytest.mark.parametrize("version", ALL_V2_FAMILY)
def test_join_racing_join_rules_change_v2(version: str) -> None:
    dag = DagBuilder(version)
    _join_vs_join_rules(dag)
    # The join rules change is a power event and is applied first; Zara's join is then
    # checked against an invite-only room and dropped.
    expected = _base_state(dag, "IMC") | {JOIN_RULES: "JR_INVITE"}
    assert dag.resolve("JR_INVITE", "ZARA_JOIN") == expected
    assert dag.resolve("ZARA_JOIN", "JR_INVITE") == expected


def test_join_racing_join_rules_change_v1() -> None:
    # v1: a key present in only one state set is not a conflict, so the join stays.
    dag = DagBuilder("1")
    _join_vs_join_rules(dag)
    expected = _base_state(dag, "IMC") | {
        JOIN_RULES: "JR_INVITE",
        member_key(ZARA): "ZARA_JOIN",
    }
    assert dag.resolve("JR_INVITE", "ZARA_JOIN") == expected


# --- a kick of a user who then sends state --------------------------------------------


def _kick_then_send(dag: DagBuilder) -> None:
    tip = dag.initial_room({BOB: 0})
    dag.topic("T0", dag.creator, "zero", parent=tip)
    # Topics are open to everyone, so only Bob's membership decides.
    dag.power_levels("PL_OPEN", dag.creator, {}, parent="T0", extra={"events": {"m.room.topic": 0}})
    dag.member("KICK", dag.creator, BOB, "leave", parent="PL_OPEN")
    dag.topic("T_BOB", BOB, "bob's", parent="PL_OPEN")


@pytest.mark.parametrize("version", ALL_V2_FAMILY)
def test_kicked_user_state_event_is_dropped_v2(version: str) -> None:
    dag = DagBuilder(version)
    _kick_then_send(dag)
    expected = _base_state(dag, "PL_OPEN") | {member_key(BOB): "KICK"}
    assert dag.resolve("KICK", "T_BOB") == expected
    assert dag.resolve("T_BOB", "KICK") == expected


def test_kicked_user_state_event_is_dropped_v1() -> None:
    dag = DagBuilder("1")
    _kick_then_send(dag)
    # Member conflicts resolve before the rest; T_BOB (the higher depth topic) then
    # fails against the kick and the older topic stays.
    expected = _base_state(dag, "PL_OPEN") | {member_key(BOB): "KICK"}
    assert dag.resolve("KICK", "T_BOB") == expected


@pytest.mark.parametrize("version", ALL_V2_FAMILY)
def test_state_sent_before_the_kick_is_dropped_too(version: str) -> None:
    # Bob's topic is on the kick's own branch, before the kick; the other branch has
    # Alice's topic. Conflicted non-power events are re-checked against the resolved
    # state, where Bob has been kicked, so Bob's topic loses.
    dag = DagBuilder(version)
    tip = dag.initial_room({BOB: 50})
    dag.topic("T_BOB", BOB, "bob's", parent=tip)
    dag.member("KICK", dag.creator, BOB, "leave", parent="T_BOB")
    dag.topic("T_ALICE", dag.creator, "alice's", parent=tip, ts=1)
    state = dag.resolve("KICK", "T_ALICE")
    assert state[member_key(BOB)] == "KICK"
    # T_ALICE has the earliest timestamp; T_BOB is checked last and fails (Bob is gone).
    assert state[TOPIC] == "T_ALICE"


# --- more than two state sets; no conflicts; one state set ----------------------------


@pytest.mark.parametrize("version", ["1", *ALL_V2_FAMILY])
def test_unconflicted_states_resolve_to_themselves(version: str) -> None:
    dag = DagBuilder(version)
    tip = dag.initial_room()
    state = dag.state_after(tip)
    assert dag.resolve(state, state, state) == dag.named(state)
    assert dag.resolve(state) == dag.named(state)
    assert dag.resolve() == {}


@pytest.mark.parametrize("version", ALL_V2_FAMILY)
def test_three_way_resolution(version: str) -> None:
    dag = DagBuilder(version)
    tip = dag.initial_room({BOB: 50})
    dag.power_levels("PL_DEMOTE", dag.creator, {BOB: 0}, parent=tip)
    dag.member("BAN", BOB, CHARLIE, "ban", parent=tip)
    dag.join_rules("JR_INVITE", dag.creator, "invite", parent=tip)
    expected = _base_state(dag, "IMC") | {POWER_LEVELS: "PL_DEMOTE", JOIN_RULES: "JR_INVITE"}
    # Charlie's join is conflicted (the ban's branch replaced it) and is in the ban's
    # auth events, so it is ordered with the power events; Charlie sorts after the
    # higher-powered Alice, so the room is invite-only when the join is re-checked.
    # The join fails, the ban too (Bob was demoted): Charlie has no membership left.
    del expected[member_key(CHARLIE)]
    for order in (("PL_DEMOTE", "BAN", "JR_INVITE"), ("JR_INVITE", "PL_DEMOTE", "BAN")):
        assert dag.resolve(*order) == expected


# --- state resolution v2.1 (rooms/v12.md) ---------------------------------------------


def _state_reset_dag(dag: DagBuilder) -> tuple[dict, dict]:
    """A fork whose one side lost a power levels change that the other built on.

    Alice makes Bob an admin (PL_BOB_ADMIN), Bob then raises Charlie (PL_BY_BOB) and
    sets a topic. The other state set has the topic but the power levels before
    Bob's promotion (a state reset, as a faulty or malicious server can produce).
    PL_BOB_ADMIN is in both auth chains, so v2 does not replay it; it lies on the
    auth path from PL_BY_BOB to IPOWER, so v2.1 does (conflicted state subgraph).
    """
    tip = dag.initial_room({BOB: 50})
    dag.power_levels("PL_BOB_ADMIN", dag.creator, {BOB: 100}, parent=tip)
    dag.topic("T_BOB", BOB, "bob's", parent="PL_BOB_ADMIN")
    dag.power_levels("PL_BY_BOB", BOB, {BOB: 100, CHARLIE: 50}, parent="T_BOB")
    full = dag.state_after("PL_BY_BOB")
    reset = full | {POWER_LEVELS: dag.id("IPOWER")}
    return full, reset


def test_v2_1_conflicted_state_subgraph_prevents_state_reset() -> None:
    dag = DagBuilder("12")
    full, reset = _state_reset_dag(dag)
    expected = dag.named(full)
    assert dag.resolve(full, reset) == expected
    assert dag.resolve(reset, full) == expected


@pytest.mark.parametrize("version", V2_VERSIONS)
def test_v2_state_reset_on_the_same_dag(version: str) -> None:
    # The same DAG under v2: PL_BY_BOB is checked against IPOWER (Bob at 50) and the
    # power levels reset.
    dag = DagBuilder(version)
    full, reset = _state_reset_dag(dag)
    expected = dag.named(full) | {POWER_LEVELS: "IPOWER"}
    assert dag.resolve(full, reset) == expected
    assert dag.resolve(reset, full) == expected


def _kick_by_user_who_left(dag: DagBuilder) -> tuple[dict, dict]:
    """Bob (a moderator) kicks Charlie on one branch; on both, Bob then leaves.

    Bob's leave is unconflicted. v2 checks the kick against the unconflicted state,
    where Bob has left, and drops it; v2.1 starts from an empty state and checks the
    kick against its own auth events, where Bob is still in the room.
    """
    tip = dag.initial_room({BOB: 50})
    dag.member("KICK", BOB, CHARLIE, "leave", parent=tip)
    dag.member("BOB_LEAVES", BOB, BOB, "leave", parent=tip)
    with_kick = dag.state_after("BOB_LEAVES") | {member_key(CHARLIE): dag.id("KICK")}
    return with_kick, dag.state_after("BOB_LEAVES")


def test_v2_1_iterative_auth_checks_start_from_empty_state() -> None:
    dag = DagBuilder("12")
    with_kick, without = _kick_by_user_who_left(dag)
    expected = dag.named(with_kick)
    assert dag.resolve(with_kick, without) == expected
    assert dag.resolve(without, with_kick) == expected


@pytest.mark.parametrize("version", V2_VERSIONS)
def test_v2_iterative_auth_checks_start_from_unconflicted_state(version: str) -> None:
    dag = DagBuilder(version)
    with_kick, without = _kick_by_user_who_left(dag)
    expected = dag.named(without)
    assert dag.resolve(with_kick, without) == expected
    assert dag.resolve(without, with_kick) == expected


@pytest.mark.parametrize(("version", "winner"), [("11", "JR_ALICE"), ("12", "JR_BOB")])
def test_creator_power_in_the_power_ordering(version: str, winner: str) -> None:
    # Alice (creator) and Bob (admin at 100) both change the join rules; both pass, so
    # the one ordered last wins. At equal power (v11) the earlier timestamp goes first
    # and Alice's later change wins; in v12 the creator's power is infinite, so her
    # change is ordered first and Bob's wins.
    dag = DagBuilder(version)
    tip = dag.initial_room({BOB: 100})
    dag.join_rules("JR_BOB", BOB, "invite", parent=tip, ts=5000)
    dag.join_rules("JR_ALICE", dag.creator, "knock", parent=tip, ts=6000)
    assert dag.resolve("JR_BOB", "JR_ALICE")[JOIN_RULES] == winner
    assert dag.resolve("JR_ALICE", "JR_BOB")[JOIN_RULES] == winner


# --- rejected events ------------------------------------------------------------------


@pytest.mark.parametrize("version", ["10", "12"])
def test_rejected_event_stays_out_unless_readmission_is_asked_for(version: str) -> None:
    dag = DagBuilder(version)
    tip = dag.initial_room({BOB: 50})
    # Marked rejected (as if it failed against the state at the event on some server),
    # though it passes against its auth events.
    dag.topic("T_BOB", BOB, "bob's", parent=tip, rejected=True)
    dag.topic("T_ALICE", dag.creator, "alice's", parent=tip, ts=1)
    with_rejected = dag.state_after(tip) | {TOPIC: dag.id("T_BOB")}
    assert dag.resolve(with_rejected, "T_ALICE")[TOPIC] == "T_ALICE"
    assert dag.resolve(with_rejected, "T_ALICE", readmit_rejected=True)[TOPIC] == "T_BOB"


@pytest.mark.parametrize("version", ["10", "12"])
def test_rejected_auth_events_are_not_used(version: str) -> None:
    # Bob's power comes from a power levels event that was rejected. Kept out (as
    # Synapse does), it cannot authorise Bob's topic, which is then checked against
    # IPOWER (Bob at 0, state_default 50) and fails. Readmitted (on request), the power
    # levels pass again and so does the topic.
    dag = DagBuilder(version)
    tip = dag.initial_room({BOB: 0})
    dag.power_levels("PL_REJECTED", dag.creator, {BOB: 50}, parent=tip, rejected=True)
    dag.topic(
        "T_BOB",
        BOB,
        "bob's",
        parent=tip,
        state_before=dag.state_after(tip) | {POWER_LEVELS: dag.id("PL_REJECTED")},
    )
    dag.topic("T_ALICE", dag.creator, "alice's", parent=tip, ts=1)
    with_bob = dag.state_after("T_BOB")
    state = dag.resolve(with_bob, "T_ALICE")
    assert state[TOPIC] == "T_ALICE"
    assert state[POWER_LEVELS] == "IPOWER"
    state = dag.resolve(with_bob, "T_ALICE", readmit_rejected=True)
    assert state[TOPIC] == "T_BOB"
    assert state[POWER_LEVELS] == "PL_REJECTED"
