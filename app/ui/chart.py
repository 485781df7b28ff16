"""The summary chart: matched vs unmatched amounts over booking dates, as SVG geometry.

Only numbers and labels are computed here; ``templates/fragments/chart.html`` draws them, so
every label goes through the template's escaping. Amounts are absolute values in minor units
of one currency (a chart never adds EUR to USD). Dates are grouped by day up to
:data:`MAX_BARS` days, else by ISO week, else by month, so the chart stays readable at any span.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from app.ui.render import money

WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 84, 12, 16, 46
MAX_BARS = 62
MAX_LABELS = 16


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    title: str


@dataclass
class Tick:
    position: float
    label: str


@dataclass
class Chart:
    currency: str
    grouping: str
    period: str = ""
    bars: list[Bar] = field(default_factory=list)
    x_labels: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    rows: list[tuple[str, int, int]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = LEFT
    plot_bottom: int = HEIGHT - BOTTOM
    plot_right: int = WIDTH - RIGHT

    @property
    def empty(self) -> bool:
        return not self.rows


def _bucket(day: dt.date, grouping: str) -> dt.date:
    if grouping == "week":
        return day - dt.timedelta(days=day.weekday())
    if grouping == "month":
        return day.replace(day=1)
    return day


def _label(start: dt.date, grouping: str, one_year: bool) -> str:
    if grouping == "week":
        year, week, _ = start.isocalendar()
        return f"W{week:02d}" if one_year else f"{year}-W{week:02d}"
    if grouping == "month":
        return start.strftime("%b" if one_year else "%Y-%m")
    return start.strftime("%m-%d") if one_year else start.isoformat()


def _nice_step(top: int) -> int:
    raw = max(1, top // 4)
    magnitude = 10 ** (len(str(raw)) - 1)
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def build(points: list[tuple[dt.date, int, int]], currency: str) -> Chart:
    """Geometry for ``(date, matched_minor, unmatched_minor)`` points of one currency."""
    if not points:
        return Chart(currency, "day")
    span = (points[-1][0] - points[0][0]).days + 1
    grouping = "day" if span <= MAX_BARS else "week" if span <= MAX_BARS * 7 else "month"
    totals: dict[dt.date, list[int]] = {}
    for day, matched, unmatched in points:
        slot = totals.setdefault(_bucket(day, grouping), [0, 0])
        slot[0] += matched
        slot[1] += unmatched
    keys = sorted(totals)
    one_year = keys[0].year == keys[-1].year
    chart = Chart(currency, grouping, rows=[(_label(k, grouping, one_year), totals[k][0], totals[k][1]) for k in keys],
                  period=f"{points[0][0].isoformat()} to {points[-1][0].isoformat()}")
    top = max(max(m, u) for m, u in totals.values()) or 1
    step = _nice_step(top)
    ceiling = step * -(-top // step)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot_w = plot_w / len(keys)
    bar_w = max(1.0, slot_w * 0.4)
    for i, (label, matched, unmatched) in enumerate(chart.rows):
        x0 = LEFT + i * slot_w + slot_w * 0.1
        for j, (series, value) in enumerate((("matched", matched), ("unmatched", unmatched))):
            h = plot_h * value / ceiling
            chart.bars.append(Bar(round(x0 + j * bar_w, 2), round(TOP + plot_h - h, 2), round(bar_w, 2),
                                  round(h, 2), series, f"{label}: {series} {money(value, currency)} {currency}"))
    every = max(1, -(-len(keys) // MAX_LABELS))
    chart.x_labels = [Tick(round(LEFT + (i + 0.5) * slot_w, 2), row[0]) for i, row in enumerate(chart.rows)
                      if i % every == 0]
    chart.y_ticks = [Tick(round(TOP + plot_h - plot_h * v / ceiling, 2), money(v, currency))
                     for v in range(0, ceiling + 1, step)]
    return chart
