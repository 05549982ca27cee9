"""Server-rendered bar charts: geometry computed here, drawn as SVG by the template (no
JavaScript, no chart library; readable in print and in a screenshot)."""

from __future__ import annotations

from dataclasses import dataclass

PALETTE = ("#0b69a3", "#d97706", "#15803d", "#b42318", "#7c3aed")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    value: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    categories: list[tuple[float, str]]   # x centre, label
    ticks: list[tuple[float, str]]        # y, label
    legend: list[tuple[str, str]]         # colour, series name


def bar_chart(categories: list[str], series: dict[str, list[float]], *, width: int = 720, height: int = 260) -> Chart:
    """Grouped bars: one group per category, one bar per series."""
    left, bottom, top = 48, 40, 12
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max((v for values in series.values() for v in values), default=0) or 1
    step = _nice_step(peak)
    ceiling = step * -(-peak // step)
    group_w = plot_w / max(1, len(categories))
    bar_w = group_w * 0.8 / max(1, len(series))
    bars = []
    for s_index, (name, values) in enumerate(series.items()):
        colour = PALETTE[s_index % len(PALETTE)]
        for c_index, value in enumerate(values):
            h = plot_h * value / ceiling
            x = left + c_index * group_w + group_w * 0.1 + s_index * bar_w
            bars.append(Bar(round(x, 1), round(top + plot_h - h, 1), round(bar_w, 1), round(h, 1), colour, value,
                            f"{categories[c_index]} · {name}: {value:g}"))
    ticks = [(round(top + plot_h - plot_h * (i * step) / ceiling, 1), f"{i * step:g}")
             for i in range(int(ceiling // step) + 1)]
    centres = [(round(left + (i + 0.5) * group_w, 1), c) for i, c in enumerate(categories)]
    legend = [(PALETTE[i % len(PALETTE)], name) for i, name in enumerate(series)]
    return Chart(width, height, bars, centres, ticks, legend)


def _nice_step(peak: float) -> float:
    """A round tick step giving about five ticks (1, 2 or 5 times a power of ten)."""
    raw = peak / 5
    power = 10 ** (len(str(int(raw))) - 1) if raw >= 1 else 1
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power
