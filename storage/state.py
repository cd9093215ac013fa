"""Room state snapshots ("state groups"), stored as short chains of deltas.

A state group is its ``prev_group`` plus a few rows; a chain longer than
``MAX_CHAIN_LENGTH`` starts again from a full snapshot, so reading a group costs one
recursive query whatever the room's size, and a new state event costs one row.
"""

from __future__ import annotations

from collections.abc import Mapping

from homeserver.events.model import StateKey
from storage.engine import Cursor

MAX_CHAIN_LENGTH = 50

StateMap = dict[StateKey, str]


def write_state_group(
    cursor: Cursor,
    group_id: int,
    room_id: str,
    prev_group: int | None,
    prev_chain_length: int,
    state: Mapping[StateKey, str],
    prev_state: Mapping[StateKey, str] | None,
) -> int:
    """Store ``state`` as group ``group_id``; returns its chain length.

    With ``prev_group`` and its state ``prev_state`` the group is stored as the delta
    between the two, unless the chain would grow too long.
    """
    if prev_group is not None and prev_state is not None and prev_chain_length < MAX_CHAIN_LENGTH:
        rows: list[tuple[int, str, str, str | None]] = [
            (group_id, key[0], key[1], event_id)
            for key, event_id in state.items()
            if prev_state.get(key) != event_id
        ]
        rows.extend((group_id, key[0], key[1], None) for key in prev_state.keys() - state.keys())
        chain_length = prev_chain_length + 1
    else:
        prev_group = None
        rows = [(group_id, key[0], key[1], event_id) for key, event_id in state.items()]
        chain_length = 0
    cursor.execute(
        "INSERT INTO state_groups (id, room_id, prev_group, chain_length) VALUES (?, ?, ?, ?)",
        (group_id, room_id, prev_group, chain_length),
    )
    cursor.execute_batch(
        "INSERT INTO state_group_entries (state_group, type, state_key, event_id)"
        " VALUES (?, ?, ?, ?)",
        rows,
    )
    return chain_length


def read_state_group(cursor: Cursor, group_id: int) -> tuple[StateMap, int]:
    """The full state of a group, and its chain length."""
    cursor.execute(
        "WITH RECURSIVE chain(id, prev_group, chain_length, position) AS ("
        " SELECT id, prev_group, chain_length, 0 FROM state_groups WHERE id = ?"
        " UNION ALL"
        " SELECT g.id, g.prev_group, g.chain_length, c.position + 1"
        " FROM state_groups g JOIN chain c ON g.id = c.prev_group"
        ") SELECT c.position, c.chain_length, e.type, e.state_key, e.event_id"
        " FROM chain c LEFT JOIN state_group_entries e ON e.state_group = c.id"
        " ORDER BY c.position DESC",
        (group_id,),
    )
    state: StateMap = {}
    chain_length = 0
    for position, length, event_type, state_key, event_id in cursor.fetchall():
        if position == 0:
            chain_length = length
        if event_type is None:
            continue  # a group with no rows of its own
        if event_id is None:
            state.pop((event_type, state_key), None)
        else:
            state[(event_type, state_key)] = event_id
    return state, chain_length
