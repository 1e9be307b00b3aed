"""Inline SVG figures for the dashboard (llmrunner/report/html.py): line charts of training curves and horizontal
stacked bars of the data funnel. Plain SVG text, no plotting library: the page stays one self-contained file that
any browser draws, and every label goes through html.escape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from llmrunner.report.core import fmt

# matplotlib's tab10: distinguishable, and the same order as the loss.png of report.md
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


@dataclass(frozen=True)
class Series:
    """One curve: a line through `points`, or dots at them (validation loss, measured now and then)."""

    label: str
    color: str
    points: list[tuple[float, float]]
    dots: bool = False


def color(index: int) -> str:
    """The `index`th colour of the palette (cycling)."""
    return PALETTE[index % len(PALETTE)]


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    return [round(i * step, 12) for i in range(first, math.floor(high / step + 1e-9) + 1)]


def _num(value: float) -> str:
    return f"{value:.1f}"


def _tick(value: float) -> str:
    """A tick label: whole numbers without a decimal point (iterations), others as table cells are."""
    return fmt(int(value)) if float(value).is_integer() else fmt(value)


def line_chart(title: str, series: list[Series], x_label: str, y_label: str, empty: str,
               width: int = 560, height: int = 320) -> str:
    """An SVG chart of `series` on shared axes with a legend of their labels; `empty` is written across the plot
    when no series has a point (a stage that left no log shows why its chart is blank)."""
    left, right, top, bottom = 56, 150, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [f'<svg class="chart" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" {FONT}>', f"<title>{escape(title)}</title>",
             f'<text x="{left}" y="18" font-weight="bold" font-size="14">{escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>']
    points = [p for s in series for p in s.points]
    if not points:
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" fill="#666">'
                     f"{escape(empty)}</text>")
        return "\n".join([*parts, "</svg>"])
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    pad = (max(ys) - min(ys)) * 0.05 or abs(max(ys)) * 0.05 or 1.0
    y_lo, y_hi = min(ys) - pad, max(ys) + pad

    def at(x: float, y: float) -> tuple[str, str]:
        return (_num(left + (x - x_lo) / (x_hi - x_lo) * plot_w), _num(top + (y_hi - y) / (y_hi - y_lo) * plot_h))

    for value in ticks(x_lo, x_hi):
        x, _ = at(value, y_lo)
        parts += [f'<line x1="{x}" y1="{top + plot_h}" x2="{x}" y2="{top + plot_h + 4}" stroke="#999"/>',
                  f'<text x="{x}" y="{top + plot_h + 16}" text-anchor="middle">{escape(_tick(value))}</text>']
    for value in ticks(y_lo, y_hi):
        _, y = at(x_lo, value)
        parts += [f'<line x1="{left}" y1="{y}" x2="{left + plot_w}" y2="{y}" stroke="#eee"/>',
                  f'<text x="{left - 6}" y="{y}" text-anchor="end" dominant-baseline="middle">'
                  f"{escape(_tick(value))}</text>"]
    parts += [f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>',
              f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle">'
              f"{escape(y_label)}</text>"]
    for s in series:
        label = escape(s.label)
        if s.dots:
            parts += [f'<circle cx="{x}" cy="{y}" r="3.5" fill="{s.color}"><title>{label}: {escape(fmt(v))} at '
                      f"{escape(fmt(i))}</title></circle>" for (i, v), (x, y) in ((p, at(*p)) for p in s.points)]
        elif s.points:
            line = " ".join(",".join(at(*p)) for p in s.points)
            parts.append(f'<polyline points="{line}" fill="none" stroke="{s.color}" stroke-width="1.5">'
                         f"<title>{label}</title></polyline>")
    for row, s in enumerate(series):
        y = top + 8 + 18 * row
        mark = (f'<circle cx="{left + plot_w + 22}" cy="{y}" r="3.5" fill="{s.color}"/>' if s.dots else
                f'<line x1="{left + plot_w + 12}" y1="{y}" x2="{left + plot_w + 32}" y2="{y}" stroke="{s.color}" '
                f'stroke-width="2"/>')
        parts += [mark, f'<text x="{left + plot_w + 38}" y="{y}" dominant-baseline="middle">{escape(s.label)}</text>']
    return "\n".join([*parts, "</svg>"])


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: `label` on its left, its segments (label, count, colour) end to end, `note` beneath."""

    label: str
    segments: list[tuple[str, int, str]]
    note: str


def _widths(counts: list[int], length: float, least: float = 2.0) -> list[float]:
    """Segment lengths proportional to `counts` over `length`, each non-zero one at least `least` long (a handful
    of rejects among thousands stays visible), the largest segment giving up what the small ones gained."""
    total = sum(counts)
    widths = [max(least, length * n / total) if n else 0.0 for n in counts]
    widths[widths.index(max(widths))] -= sum(widths) - length
    return widths


def _legend(entries: list[tuple[str, str]], x0: float, y0: float, width: float) -> tuple[list[str], float]:
    """Colour keys laid out left to right, wrapping at `width`; returns the SVG parts and the height used."""
    parts, x, y = [], x0, y0
    for name, colour in entries:
        step = 16 + 7 * len(name) + 18  # about 7 px a character at 12 px
        if x > x0 and x + step > x0 + width:
            x, y = x0, y + 20
        parts += [f'<rect x="{_num(x)}" y="{y}" width="12" height="12" fill="{colour}"/>',
                  f'<text x="{_num(x + 16)}" y="{y + 6}" dominant-baseline="middle">{escape(name)}</text>']
        x += step
    return parts, (y - y0 + 20 if entries else 0)


def stacked_bars(title: str, bars: list[Bar], width: int = 760) -> str:
    """Horizontal stacked bars, each as long as the plot (segments are shares of their own bar's total: datasets of
    very different sizes stay readable), counts on the segments wide enough to hold them, and a legend of the
    segments that occur."""
    left, right, label_w, bar_h, gap = 8, 8, 150, 22, 26
    plot_w = width - left - right - label_w
    parts, y = [], 28
    for bar in bars:
        segments = [s for s in bar.segments if s[1]]
        parts.append(f'<text x="{left}" y="{y + bar_h / 2}" dominant-baseline="middle">{escape(bar.label)}</text>')
        x, total = left + label_w, sum(n for _, n, _ in segments)
        for (name, n, colour), w in zip(segments, _widths([n for _, n, _ in segments], plot_w)):
            parts.append(f'<rect x="{_num(x)}" y="{y}" width="{_num(w)}" height="{bar_h}" fill="{colour}">'
                         f"<title>{escape(name)}: {escape(fmt(n))} ({n / total:.1%})</title></rect>")
            text = fmt(n)
            if w > 8 * len(text) + 6:
                parts.append(f'<text x="{_num(x + w / 2)}" y="{y + bar_h / 2}" text-anchor="middle" '
                             f'dominant-baseline="middle" fill="#fff">{escape(text)}</text>')
            x += w
        parts.append(f'<text x="{left + label_w}" y="{y + bar_h + 13}" fill="#444">{escape(bar.note)}</text>')
        y += bar_h + gap
    entries = list(dict.fromkeys((name, colour) for bar in bars for name, n, colour in bar.segments if n))
    keys, used = _legend(entries, left + label_w, y + 4, plot_w)
    height = y + 4 + used + 8
    head = [f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f"{FONT}>", f"<title>{escape(title)}</title>",
            f'<text x="{left}" y="18" font-weight="bold" font-size="14">{escape(title)}</text>']
    return "\n".join([*head, *parts, *keys, "</svg>"])
