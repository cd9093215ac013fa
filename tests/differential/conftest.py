from __future__ import annotations

from typing import Any

from tests.differential.harness import MASTER_SEED, TOTALS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TOTALS:
        return
    by_suite: dict[str, list[int]] = {}
    deviations: dict[str, int] = {}
    for tally in TOTALS.values():
        counts = by_suite.setdefault(tally.suite, [0, 0, 0])
        counts[0] += tally.cases
        counts[1] += tally.accepted
        counts[2] += len(tally.mismatches)
        for name, n in tally.deviations.items():
            deviations[name] = deviations.get(name, 0) + n
    terminalreporter.section(f"differential tests against Synapse (seed {MASTER_SEED})")
    for suite, (cases, accepted, mismatches) in sorted(by_suite.items()):
        terminalreporter.write_line(
            f"{suite}: {cases} cases ({accepted} allowed/changed), {mismatches} mismatches"
        )
    for name, n in sorted(deviations.items()):
        terminalreporter.write_line(f"documented Synapse deviation {name}: {n} cases")
