"""Seeds, case counts and failure reports shared by the differential tests.

Environment:

``HEARTH_DIFF_SEED``
    The master seed (default ``hearth``). ``random`` picks a fresh one, printed on failure.
``HEARTH_DIFF_SCALE``
    Multiplies the number of generated cases (default 1; 0.1 for a quick look, 10 for a soak).
``HEARTH_DIFF_CASE``
    ``<room version>:<case index>``: run that single case only (with the same master
    seed), to reproduce a failure. Failure messages print the exact command.

Every case draws from its own ``random.Random(f"{seed}:{suite}:{version}:{index}")``, so a
case reproduces on its own whatever ran before it.
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

ROOM_VERSIONS = tuple(str(n) for n in range(1, 13))

_seed = os.environ.get("HEARTH_DIFF_SEED", "hearth")
if _seed == "random":
    _seed = secrets.token_hex(4)
MASTER_SEED = _seed


def scale() -> float:
    return float(os.environ.get("HEARTH_DIFF_SCALE", "1"))


def scaled(count: int) -> int:
    return max(1, round(count * scale()))


def case_indices(version: str, count: int) -> Iterator[int]:
    """The case indices to run for ``version``: all, or the one ``HEARTH_DIFF_CASE`` names."""
    only = os.environ.get("HEARTH_DIFF_CASE")
    if only:
        only_version, _, index = only.partition(":")
        if only_version == version:
            yield int(index)
        return
    yield from range(count)


def case_rng(suite: str, version: str, index: int) -> random.Random:
    return random.Random(f"{MASTER_SEED}:{suite}:{version}:{index}")


def reproduce_hint(suite_test: str, version: str, index: int) -> str:
    return (
        f"HEARTH_DIFF_SEED={MASTER_SEED} HEARTH_DIFF_CASE={version}:{index} "
        f".venv/bin/pytest tests/differential/{suite_test} -k 'v{version}]'"
    )


@dataclass
class Tally:
    """What a test run compared, and where the implementations disagreed."""

    suite: str
    version: str
    cases: int = 0
    accepted: int = 0
    deviations: dict[str, int] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)

    def deviation(self, name: str) -> None:
        self.deviations[name] = self.deviations.get(name, 0) + 1

    def report(self) -> str:
        head = (
            f"{self.suite} v{self.version}: {self.cases} cases, {len(self.mismatches)} "
            f"mismatches (seed {MASTER_SEED})"
        )
        # Every mismatch in one line, then the first few in full.
        summary = [m.partition("\n")[0] for m in self.mismatches[:200]]
        return "\n\n".join([head, "\n".join(summary), *self.mismatches[:3]])


# Totals across the session, printed by conftest at the end of the run.
TOTALS: dict[str, Tally] = {}


def record(tally: Tally) -> None:
    TOTALS[f"{tally.suite}:{tally.version}"] = tally
