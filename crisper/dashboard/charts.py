"""The overview's activity chart as SVG geometry, computed on the server (no chart library).

Pure: minutes in, rectangles and a polyline out; the template only draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

from crisper.insights import Minute

WIDTH, HEIGHT = 720.0, 200.0
LEFT, BOTTOM, TOP = 36.0, 20.0, 8.0


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: float
    height: float
    bars: list[Bar]
    line: str  # polyline points of jobs submitted per minute
    ticks: list[Tick]
    labels: list[tuple[float, str, str]]  # x, text-anchor, time label
    totals: dict[str, int]


def _nice_max(value: int) -> int:
    """A round axis maximum at or above `value`."""
    if value <= 4:
        return 4
    step = 1
    while step * 10 < value:
        step *= 10
    for m in (1, 2, 5, 10):
        if m * step >= value:
            return m * step
    return 10 * step


def activity_chart(minutes: list[Minute]) -> Chart:
    """Stacked bars of succeeded and failed per minute, and a line of jobs submitted."""
    n = max(len(minutes), 1)
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    top = _nice_max(max([max(m.submitted, m.succeeded + m.failed) for m in minutes] or [0]))
    slot = plot_w / n

    def y(value: float) -> float:
        return round(TOP + plot_h - plot_h * value / top, 1)

    bars: list[Bar] = []
    points: list[str] = []
    labels: list[tuple[float, str, str]] = []
    for i, m in enumerate(minutes):
        x = LEFT + i * slot
        when = m.start.strftime("%H:%M")
        if m.succeeded:
            bars.append(Bar(round(x + 1, 1), y(m.succeeded), round(slot - 2, 1),
                            round(y(0) - y(m.succeeded), 1), "ok",
                            f"{when}: {m.succeeded} succeeded"))
        if m.failed:
            bars.append(Bar(round(x + 1, 1), y(m.succeeded + m.failed), round(slot - 2, 1),
                            round(y(m.succeeded) - y(m.succeeded + m.failed), 1), "bad",
                            f"{when}: {m.failed} failed"))
        points.append(f"{round(x + slot / 2, 1)},{y(m.submitted)}")
        if i % 10 == 0 or i == n - 1:
            anchor = "start" if i == 0 else "end" if i == n - 1 else "middle"
            labels.append((round(x + slot / 2, 1), anchor, when))
    ticks = [Tick(y(v), str(v)) for v in (0, top // 2, top)]
    totals = {"submitted": sum(m.submitted for m in minutes),
              "succeeded": sum(m.succeeded for m in minutes),
              "failed": sum(m.failed for m in minutes)}
    return Chart(WIDTH, HEIGHT, bars, " ".join(points), ticks, labels, totals)
