"""The fault suite's own counting (pure): when runs of one job overlap, from their marks."""

from __future__ import annotations

import pytest

from tests.fault_suite.tally import Run, overlaps

pytestmark = pytest.mark.faults


def run(*times: float, ended: bool = True) -> Run:
    return Run("job", "work", 1, 1, tuple(times), ended)


@pytest.mark.parametrize(("runs", "expected"), [
    # one after the other: no overlap
    ([run(0, 0.2, 0.4), run(0.5, 0.7)], False),
    # the replacement starts while the first still ticks
    ([run(0, 0.2, 0.4, 0.6), run(0.5, 0.7)], True),
    # the first was frozen from 0.2 to 9 (no marks), the replacement ran in between: no overlap
    ([run(0, 0.2, 9.0, ended=False), run(4.0, 4.2, 4.4)], False),
    # ... but it woke while the replacement still ran
    ([run(0, 0.2, 4.2, ended=False), run(4.0, 4.2, 4.4)], True),
    # a run inside a long one
    ([run(*[i * 0.2 for i in range(20)]), run(1.0, 1.1)], True),
    # a single run never overlaps itself, even across a frozen stretch
    ([run(0, 0.2, 5.0, 5.2)], False),
])
def test_overlaps(runs: list[Run], expected: bool) -> None:
    assert overlaps(runs) is expected


def test_a_frozen_stretch_splits_a_run() -> None:
    assert run(0, 0.2, 0.4, 9.0, 9.2).segments() == [(0, 0.4), (9.0, 9.2)]
