"""State resolution across a server outage: a room shared by two servers forks while one of
them is stopped, and both converge to the same state once it is back.

While server S is down, the other one (R) changes the room: a new name, a new topic and new
power levels. S comes back and, before it has heard of any of that (R has backed off from S
and only wakes up when S contacts it), S's user changes the topic and the power levels too
and adds a state event of their own. Both branches meet on both servers: each must resolve
the fork (state resolution v2) to the same state, which /state shows on both, with R's name,
S's own state event, and one topic and one power levels event that both sides agree on.

Run between Hearth and Synapse (either one stopped) and between two Hearth servers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.interop.federation_sides import (
    Account,
    HearthSide,
    Side,
    SynapseSide,
    wait_for,
    wait_membership,
    wait_text,
)
from tests.interop.hearth_process import HearthProcess
from tests.interop.scenarios import converged
from tests.interop.synapse_server import SynapseServer

pytestmark = pytest.mark.slow

CUSTOM = "org.hearth.test.convergence"


class Restartable:
    """A side that can be stopped and started again with the same name, port and data."""

    def __init__(self, side: Side, stop: Callable[[], None], start: Callable[[], None]) -> None:
        self.side = side
        self.stop = stop
        self.start = start


def restartable_hearth(server: HearthProcess, label: str) -> Restartable:
    # A process, not an in-process server: when it is stopped, nothing answers for it.
    return Restartable(HearthSide(server, label), server.stop, server.start)


def restartable_synapse(server: SynapseServer) -> Restartable:
    return Restartable(SynapseSide(server), server.stop, server.start)


def _levels(account: Account, room_id: str) -> dict[str, Any]:
    levels = account.state_content(room_id, "m.room.power_levels")
    assert levels is not None
    return levels


def fork_and_converge(up: Restartable, down: Restartable) -> None:
    alice = up.side.register("alice")
    bob = down.side.register("bob")
    room_id = alice.create_room(preset="public_chat", name="Before")
    assert bob.join(room_id, via=up.side) == room_id
    wait_membership(alice, room_id, bob, "join")
    # bob may change anything, as alice may: both branches are authorised on their own.
    levels = _levels(alice, room_id)
    levels["users"][bob.user_id] = 100
    alice.put_state(room_id, "m.room.power_levels", levels)
    wait_for(
        lambda: _levels(bob, room_id)["users"].get(bob.user_id) == 100,
        "bob's power on his server",
    )
    converged(alice, bob, room_id)

    down.stop()
    alice.put_state(room_id, "m.room.name", {"name": f"Named on {up.side.label}"})
    alice.put_state(room_id, "m.room.topic", {"topic": f"Topic from {up.side.label}"})
    levels = _levels(alice, room_id)
    levels["users"][f"@helper:{up.side.server_name}"] = 50
    alice.put_state(room_id, "m.room.power_levels", levels)
    alice.send_text(room_id, f"said on {up.side.label} during the outage")

    down.start()
    # bob's server has not heard of any of that yet: his changes fork the room.
    assert bob.state_content(room_id, "m.room.name") == {"name": "Before"}
    bob.put_state(room_id, "m.room.topic", {"topic": f"Topic from {down.side.label}"})
    levels = _levels(bob, room_id)
    levels["users"][f"@helper:{down.side.server_name}"] = 50
    bob.put_state(room_id, "m.room.power_levels", levels)
    bob.put_state(room_id, CUSTOM, {"by": down.side.label}, state_key=bob.user_id)
    bob.send_text(room_id, f"said on {down.side.label} after the outage")

    # Each side gets the other's branch (catch-up, /get_missing_events) and resolves.
    wait_text(bob, room_id, f"said on {up.side.label} during the outage")
    wait_text(alice, room_id, f"said on {down.side.label} after the outage")
    state = converged(alice, bob, room_id)
    for viewer in (alice, bob):
        assert viewer.state_content(room_id, "m.room.name") == {
            "name": f"Named on {up.side.label}"
        }, str(viewer)
        assert viewer.state_content(room_id, CUSTOM, bob.user_id) == {"by": down.side.label}
    topics = {str(v): v.state_content(room_id, "m.room.topic") for v in (alice, bob)}
    assert len({repr(t) for t in topics.values()}) == 1, topics
    assert ("m.room.power_levels", "") in state

    # The room goes on as one: new messages both ways over the merged DAG.
    alice.send_text(room_id, "after the merge, from alice")
    wait_text(bob, room_id, "after the merge, from alice")
    bob.send_text(room_id, "after the merge, from bob")
    wait_text(alice, room_id, "after the merge, from bob")
    converged(alice, bob, room_id)


@pytest.mark.parametrize("stopped", ["hearth_stopped", "synapse_stopped"])
def test_fork_while_a_server_is_down_then_converge(
    stopped: str,
    hearth_processes: Callable[[str], HearthProcess],
    extra_synapse: Callable[[], SynapseServer],
) -> None:
    hearth = restartable_hearth(hearth_processes("hearth"), "hearth")
    synapse = restartable_synapse(extra_synapse())
    if stopped == "hearth_stopped":
        fork_and_converge(up=synapse, down=hearth)
    else:
        fork_and_converge(up=hearth, down=synapse)


def test_fork_between_two_hearth_servers_then_converge(
    hearth_processes: Callable[[str], HearthProcess],
) -> None:
    fork_and_converge(
        up=restartable_hearth(hearth_processes("hearth-a"), "hearth-a"),
        down=restartable_hearth(hearth_processes("hearth-b"), "hearth-b"),
    )
