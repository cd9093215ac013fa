"""Room state snapshots ("state groups"), stored as short chains of deltas.

A state group is its ``prev_group`` plus a few rows; a chain longer than
``MAX_CHAIN_LENGTH`` starts again from a full snapshot, so reading a group costs one
recursive query whatever the room's size, and a new state event costs one row.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

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


_GROUPS_PER_QUERY = 500


def read_state_groups(
    cursor: Cursor, group_ids: Collection[int], where: str = "", params: Sequence[Any] = ()
) -> dict[int, StateMap]:
    """The state of each group, read for all of them at once (a /sync over hundreds of rooms
    would otherwise pay a round trip per room). ``where``: an extra condition on the
    entries (alias ``e``), with its ``params``, to read only some keys.

    The chains are walked first and their entries read by group ID after: joining the
    recursive walk to the entries directly made PostgreSQL expect hundreds of rows per
    group and scan every entry of every room (~8 ms instead of ~0.1 ms for one group).
    """
    wanted = sorted(set(group_ids))
    chains: dict[int, list[int]] = {}
    for start in range(0, len(wanted), _GROUPS_PER_QUERY):
        chunk = wanted[start : start + _GROUPS_PER_QUERY]
        cursor.execute(
            "WITH RECURSIVE chain(root, id, prev_group, position) AS ("
            " SELECT id, id, prev_group, 0 FROM state_groups"
            f" WHERE id IN ({','.join('?' * len(chunk))})"
            " UNION ALL"
            " SELECT c.root, g.id, g.prev_group, c.position + 1"
            " FROM state_groups g JOIN chain c ON g.id = c.prev_group"
            ") SELECT root, id FROM chain ORDER BY root, position DESC",
            chunk,
        )
        for root, group in cursor.fetchall():
            chains.setdefault(int(root), []).append(int(group))
    members = sorted({group for chain in chains.values() for group in chain})
    condition = f" AND ({where})" if where else ""
    entries: dict[int, list[tuple[str, str, str | None]]] = {}
    for start in range(0, len(members), _GROUPS_PER_QUERY):
        chunk = members[start : start + _GROUPS_PER_QUERY]
        cursor.execute(
            "SELECT e.state_group, e.type, e.state_key, e.event_id FROM state_group_entries e"
            f" WHERE e.state_group IN ({','.join('?' * len(chunk))}){condition}",
            (*chunk, *params),
        )
        for group, event_type, state_key, event_id in cursor.fetchall():
            entries.setdefault(int(group), []).append((event_type, state_key, event_id))
    result: dict[int, StateMap] = {}
    for group in wanted:
        # From the chain's full snapshot up to the group: later deltas override, and a
        # NULL event ID removes the key.
        state: StateMap = {}
        for member in chains.get(group, ()):
            for event_type, state_key, event_id in entries.get(member, ()):
                if event_id is None:
                    state.pop((event_type, state_key), None)
                else:
                    state[(event_type, state_key)] = event_id
        result[group] = state
    return result
