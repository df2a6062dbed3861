"""Small inline SVG charts, so a report is one self-contained HTML file with no script or network."""

from __future__ import annotations

from html import escape

import numpy as np

WIDTH, HEIGHT, PAD = 640, 260, 48
COLOURS = ["#2b8cbe", "#31a354", "#e6550d", "#756bb1", "#de2d26", "#636363"]


def _frame(plot_id: str, title: str, body: list[str], x_label: str, y_label: str) -> str:
    return (
        f'<svg id="{escape(plot_id)}" class="plot" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">'
        f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">{escape(title)}</text>'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 10}" y2="{HEIGHT - PAD}" stroke="#333"/>'
        f'<line x1="{PAD}" y1="30" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>'
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11">{escape(x_label)}</text>'
        f'<text x="12" y="{HEIGHT / 2}" font-size="11" transform="rotate(-90 12 {HEIGHT / 2})" text-anchor="middle">{escape(y_label)}</text>'
        + "".join(body)
        + "</svg>"
    )


def bars(plot_id: str, title: str, values: dict[str, float], *, y_label: str = "count") -> str:
    """One bar per label."""
    labels = list(values)
    top = max(values.values(), default=0) or 1
    span = (WIDTH - PAD - 20) / max(1, len(labels))
    body = []
    for k, label in enumerate(labels):
        height = (HEIGHT - PAD - 40) * values[label] / top
        x = PAD + 5 + k * span
        body.append(f'<rect x="{x:.1f}" y="{HEIGHT - PAD - height:.1f}" width="{span * 0.7:.1f}" height="{height:.1f}" fill="{COLOURS[k % len(COLOURS)]}"><title>{escape(label)}: {values[label]:,.4g}</title></rect>')
        body.append(f'<text x="{x + span * 0.35:.1f}" y="{HEIGHT - PAD + 14}" text-anchor="middle" font-size="10">{escape(label[:18])}</text>')
        body.append(f'<text x="{x + span * 0.35:.1f}" y="{HEIGHT - PAD - height - 3:.1f}" text-anchor="middle" font-size="10">{values[label]:,.4g}</text>')
    return _frame(plot_id, title, body, "", y_label)


def histogram(plot_id: str, title: str, series: dict[str, list[float]], *, x_label: str, bins: int = 30, log: bool = False) -> str:
    """Overlaid outline histograms, one per series, on shared bins."""
    data = {name: np.asarray(v, dtype=float) for name, v in series.items() if len(v)}
    if not data:
        return _frame(plot_id, title, [f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" font-size="12">no data</text>'], x_label, "count")
    everything = np.concatenate(list(data.values()))
    low, high = float(everything.min()), float(everything.max())
    if log:
        low, high = max(low, 1.0), max(high, 2.0)
        edges = np.geomspace(low, high, bins + 1)
    else:
        edges = np.linspace(low, high if high > low else low + 1, bins + 1)
    counts = {name: np.histogram(v, bins=edges)[0] for name, v in data.items()}
    top = max(int(c.max()) for c in counts.values()) or 1
    plot_w, plot_h = WIDTH - PAD - 20, HEIGHT - PAD - 40
    body = []
    for k, (name, c) in enumerate(counts.items()):
        points = []
        for i, n in enumerate(c):
            x0, x1 = PAD + plot_w * i / bins, PAD + plot_w * (i + 1) / bins
            y = HEIGHT - PAD - plot_h * n / top
            points += [f"{x0:.1f},{y:.1f}", f"{x1:.1f},{y:.1f}"]
        colour = COLOURS[k % len(COLOURS)]
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(points)}"><title>{escape(name)}</title></polyline>')
        body.append(f'<text x="{WIDTH - 15}" y="{36 + 13 * k}" text-anchor="end" font-size="10" fill="{colour}">{escape(name)} (n={len(data[name]):,})</text>')
    for value, anchor in ((low, "start"), (high, "end")):
        x = PAD if anchor == "start" else PAD + plot_w
        body.append(f'<text x="{x}" y="{HEIGHT - PAD + 14}" text-anchor="{anchor}" font-size="10">{value:,.4g}</text>')
    return _frame(plot_id, title, body, x_label + (" (log scale)" if log else ""), "count")
