"""Two Hearth servers federating over TLS on loopback, through the same scenarios as Hearth
and Synapse (scenarios.py), on SQLite and PostgreSQL.

Joins, invites, leaves, kicks, bans and alias joins between two Hearth servers are covered
step by step in tests/integration/test_federation_membership.py; these are the scenarios
that go beyond membership: a conversation, state changes, EDUs, profile queries, history
backfill and an encrypted conversation with matrix-nio, each asserted on both servers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.federation_helpers import Federation
from tests.interop import scenarios
from tests.interop.federation_sides import HEARTH_SETTINGS, HearthSide

pytestmark = pytest.mark.slow


@pytest.fixture
def pair(federation: Federation) -> tuple[HearthSide, HearthSide]:
    return (
        HearthSide(federation.start("a", **HEARTH_SETTINGS), "hearth-a"),
        HearthSide(federation.start("b", **HEARTH_SETTINGS), "hearth-b"),
    )


def test_create_room_and_join_from_the_other_server(pair: tuple[HearthSide, HearthSide]) -> None:
    scenarios.create_and_join(*pair)


def test_messages_both_ways(pair: tuple[HearthSide, HearthSide]) -> None:
    scenarios.messages_both_ways(*pair)


def test_topic_and_power_levels(pair: tuple[HearthSide, HearthSide]) -> None:
    scenarios.topic_and_power_levels(*pair)


def test_typing_and_receipts(pair: tuple[HearthSide, HearthSide]) -> None:
    scenarios.typing_and_receipts(*pair)


def test_profile_query(pair: tuple[HearthSide, HearthSide]) -> None:
    scenarios.profile_query(*pair)


def test_backfill_for_a_late_joiner(pair: tuple[HearthSide, HearthSide]) -> None:
    scenarios.backfill_for_late_joiner(*pair)


def test_encrypted_conversation(pair: tuple[HearthSide, HearthSide], tmp_path: Path) -> None:
    scenarios.encrypted_conversation(*pair, tmp_path / "stores")
