"""bench.all's table of the single-submit figures, with and without the commit probe (JSON
written before the probe existed has no `commit_ms`)."""

from __future__ import annotations

from typing import Any

from bench.all import single_rows


def _figures(commit: dict[str, float] | None) -> dict[str, Any]:
    side = {"throughput": 1000.0, "pickup_p50_ms": 2.5, "pickup_p99_ms": 3.8}
    figures: dict[str, Any] = {"summary": {"celery": dict(side),
                                           "crisper": {**side, "throughput": 1100.0}}}
    if commit is not None:
        figures["commit_ms"] = commit
    return figures


def test_the_commit_probe_gets_a_row_of_its_own_in_crispers_column() -> None:
    # Given single_submit's figures with its commit probe
    figures = _figures({"back_to_back_p50_ms": 0.27, "every_10ms_p50_ms": 0.41,
                        "every_10ms_p99_ms": 0.63})

    # When bench.all builds its rows
    rows = single_rows(figures)

    # Then the last row gives both p50s and the spaced p99, under Crisper only
    label, celery, crisper, ratio, target = rows[-1]
    assert label.startswith("durable 1-row commit")
    assert (celery, crisper, ratio, target) == ("", "0.27; 0.41 (0.63) ms", "", "")


def test_figures_without_the_probe_give_no_commit_row() -> None:
    rows = single_rows(_figures(None))

    assert not any(row[0].startswith("durable") for row in rows)
    assert rows[0][3] == "1.10x"
