"""Inline SVG charts for the HTML report: pure functions from figures to markup, no script.

The SVG is meant to sit inside an HTML document, whose parser puts `<svg>` in the SVG namespace
by itself, so no `xmlns` URL is written (the report references no URL at all). Every piece of
text goes through html.escape; hovering a bar shows its figure (an SVG `<title>`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

WIDTH = 720
_LEFT = 52
_RIGHT = 16
_LABEL_WIDTH = 170
_ROW = 24
_TITLE = 30
_PANEL = 140
_MAX_X_LABELS = 6
_MAX_LABEL_CHARS = 22

# One meaning, one colour: a priority, a health band and an outcome keep theirs in every chart.
COLORS = {
    "critical": "#c0392b",
    "high": "#e67e22",
    "medium": "#2e86c1",
    "low": "#95a5a6",
    "healthy": "#27ae60",
    "degraded": "#f1c40f",
    "succeeded": "#27ae60",
    "skipped": "#7f8c8d",
    "dead_lettered": "#c0392b",
    "rejected": "#8e44ad",
    "decided": "#aed6f1",
    "deferred": "#d6eaf8",
    "running": "#2e86c1",
    "retrying": "#e67e22",
    "breaker_deferred": "#f5b041",
    "awaiting_approval": "#bb8fce",
    "approved": "#76d7c4",
    "commands": "#2e86c1",
}
_SPARE = ("#34495e", "#16a085", "#d35400", "#7d3c98", "#2874a6", "#b7950b")

Segments = Sequence[tuple[str, float]]


def time_chart(
    name: str,
    title: str,
    starts: Sequence[str],
    panels: Sequence[tuple[str, Sequence[tuple[str, Sequence[float]]]]],
) -> str:
    """Stacked columns over time, one panel per (heading, [(series, value per bucket)])."""
    if not starts or not any(series for _, series in panels):
        return no_data(name, title)
    names = _unique(series_name for _, series in panels for series_name, _ in series)
    legend_height = 28
    height = legend_height + len(panels) * (_PANEL + 30) + 24
    body = [_legend(names, 0)]
    slot = (WIDTH - _LEFT - _RIGHT) / len(starts)
    bar = slot * 0.8 if slot > 5 else slot
    top = legend_height
    for heading, series in panels:
        totals = [sum(values[i] for _, values in series) for i in range(len(starts))]
        scale = _nice_max(max(totals, default=0))
        body.append(f'<text x="{_LEFT}" y="{top + 14}" class="heading">{_e(heading)}</text>')
        base = top + 22 + _PANEL
        body.extend(_y_axis(scale, top + 22, base))
        for index, start in enumerate(starts):
            x = _LEFT + index * slot + (slot - bar) / 2
            y = float(base)
            for series_name, values in series:
                value = values[index]
                if value <= 0:
                    continue
                h = value / scale * _PANEL
                y -= h
                tip = f"{series_name} at {start}: {_number(value)}"
                body.append(
                    f'<rect x="{x:.2f}" y="{y:.2f}" width="{bar:.2f}" height="{h:.2f}" '
                    f'fill="{_color(series_name, names)}"><title>{_e(tip)}</title></rect>'
                )
        top = base + 8
    for index in _label_indexes(len(starts)):
        x = _LEFT + (index + 0.5) * slot
        label = _short_time(starts[index], starts)
        body.append(
            f'<text x="{x:.2f}" y="{top + 12}" class="tick" text-anchor="middle">{_e(label)}</text>'
        )
    return _svg(name, title, height, body)


def outcome_chart(
    name: str, title: str, rows: Sequence[tuple[str, Segments]], order: Sequence[str] = ()
) -> str:
    """Horizontal stacked bars: one row per label, one segment per (status, count)."""
    if not rows:
        return no_data(name, title)
    seen = _unique(segment for _, segments in rows for segment, _ in segments)
    # The legend follows `order` (a lifecycle), not whichever row happened to come first.
    names = [n for n in order if n in seen] + [n for n in seen if n not in order]
    return _bars(name, title, rows, names, legend=True)


def ranked_chart(name: str, title: str, rows: Sequence[tuple[str, float]], unit: str) -> str:
    """Horizontal bars, largest first as given, each labelled with its value."""
    if not rows:
        return no_data(name, title)
    return _bars(name, title, [(label, [(unit, value)]) for label, value in rows], [unit], False)


def no_data(name: str, title: str) -> str:
    """A chart with nothing to draw says so, at the chart's place."""
    body = [f'<text x="{WIDTH / 2}" y="40" text-anchor="middle" class="empty">no data</text>']
    return _svg(name, title, 70, body)


def _bars(
    name: str, title: str, rows: Sequence[tuple[str, Segments]], names: list[str], legend: bool
) -> str:
    top = 28 if legend else 6
    height = top + len(rows) * _ROW + 8
    body = [_legend(names, 0)] if legend else []
    scale = max((sum(v for _, v in segments) for _, segments in rows), default=0) or 1
    room = WIDTH - _LABEL_WIDTH - 70
    for index, (label, segments) in enumerate(rows):
        y = top + index * _ROW
        short = _shortened(label)
        body.append(
            f'<text x="{_LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end" class="label">'
            f"<title>{_e(label)}</title>{_e(short)}</text>"
        )
        x = float(_LABEL_WIDTH)
        for segment, value in segments:
            if value <= 0:
                continue
            w = value / scale * room
            tip = f"{label}, {segment}: {_number(value)}"
            body.append(
                f'<rect x="{x:.2f}" y="{y + 3}" width="{w:.2f}" height="{_ROW - 6}" '
                f'fill="{_color(segment, names)}"><title>{_e(tip)}</title></rect>'
            )
            x += w
        total = sum(v for _, v in segments)
        body.append(f'<text x="{x + 6:.2f}" y="{y + 15}" class="value">{_number(total)}</text>')
    return _svg(name, title, height, body)


def _svg(name: str, title: str, height: int, body: list[str]) -> str:
    # The title is drawn too (a <title> alone is only a tooltip); the figure sits below it.
    height += _TITLE
    return (
        f'<svg data-chart="{_e(name)}" role="img" aria-label="{_e(title)}" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">'
        f'<title>{_e(title)}</title><text x="0" y="18" class="title">{_e(title)}</text>'
        f'<g transform="translate(0 {_TITLE})">{"".join(body)}</g></svg>'
    )


def _legend(names: Sequence[str], y: int) -> str:
    items, x = [], float(_LEFT)
    for label in names:
        items.append(
            f'<rect x="{x:.1f}" y="{y + 6}" width="12" height="12" fill="{_color(label, names)}"/>'
            f'<text x="{x + 16:.1f}" y="{y + 16}" class="legend">{_e(label)}</text>'
        )
        # A rough advance for a 12px sans-serif label; the legend only needs not to overlap.
        x += 16 + 7 * len(label) + 14
    return "".join(items)


def _y_axis(scale: float, top: int, base: int) -> list[str]:
    lines = []
    for fraction in (0.0, 0.5, 1.0):
        y = base - fraction * (base - top)
        lines.append(
            f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.2f}" y2="{y:.2f}" class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.2f}" text-anchor="end" class="tick">'
            f"{_number(scale * fraction)}</text>"
        )
    return lines


def _nice_max(value: float) -> float:
    """The axis' top: the first of 1, 2, 4, 6, 8, 10 times a power of ten at or above value."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    # Even multiples, so the middle grid line falls on a whole count.
    return next(m * power for m in (1, 2, 4, 6, 8, 10) if m * power >= value)


def _label_indexes(count: int) -> list[int]:
    if count <= _MAX_X_LABELS:
        return list(range(count))
    last = count - 1
    return sorted({round(k * last / (_MAX_X_LABELS - 1)) for k in range(_MAX_X_LABELS)})


def _short_time(start: str, starts: Sequence[str]) -> str:
    """`10:05` when every bucket is on one day, `11-21 10:05` otherwise (UTC either way)."""
    clock = start[11:19] if any(s[17:19] not in ("", "00") for s in starts) else start[11:16]
    return clock if len({s[:10] for s in starts}) == 1 else f"{start[5:10]} {clock}"


def _shortened(label: str) -> str:
    """Long ids lose their middle: their ends are what tell `ws-eu-0001` from `ws-eu-0002`."""
    if len(label) <= _MAX_LABEL_CHARS:
        return label
    head = (_MAX_LABEL_CHARS - 1) // 2
    return f"{label[:head]}…{label[len(label) - (_MAX_LABEL_CHARS - 1 - head) :]}"


def _color(name: str, names: Sequence[str]) -> str:
    return COLORS.get(name) or _SPARE[list(names).index(name) % len(_SPARE)]


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
