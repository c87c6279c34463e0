"""Server-side SVG charts (no script needed, nothing fetched from elsewhere).

:func:`probability_chart` draws a user's probability over their writings (by
writing number or by time) with the threshold and the alert point marked;
every writing is a point with a tooltip and a link to the writing on the page.
:func:`bar_chart` draws a daily series for the statistics page, with a visible
title and the unit of its axis. Output is a string of SVG markup built only
from numbers and escaped labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

W, H = 720, 250
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 30, 34


def _scale(lo: float, hi: float, a: float, b: float) -> Callable[[float], float]:
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def integer_ticks(lo: int, hi: int, most: int = 8) -> list[int]:
    """Whole numbers from lo to hi at a 1-2-5 step, at most ``most`` of them."""
    if hi <= lo:
        return [lo]
    span = hi - lo
    step = 1
    for mag in (1, 10, 100, 1000, 10_000, 100_000):
        for m in (1, 2, 5):
            step = m * mag
            if span / step + 1 <= most:
                break
        else:
            continue
        break
    first = math.ceil(lo / step) * step
    ticks = list(range(first, hi + 1, step))
    if lo not in ticks and (not ticks or ticks[0] - lo > step / 3):
        ticks.insert(0, lo)
    return ticks


def probability_chart(
    xs: Sequence[float],
    p_user: Sequence[float],
    p_text: Sequence[float],
    threshold: float,
    alert_x: float | None,
    x_label: Callable[[float], str],
    title: str,
    css_id: str,
    *,
    integer_x: bool = False,
    point_ids: Sequence[str] | None = None,
    point_labels: Sequence[str] | None = None,
) -> str:
    """p_user as a line, p_text as dots, threshold dashed, alert point ringed.

    ``point_ids``: the page anchor of each point's writing (a click jumps
    there); ``point_labels``: each point's tooltip prefix.
    """
    if not xs:
        return '<p class="muted">No scored writings.</p>'
    x0, x1 = min(xs), max(xs)
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    sx = _scale(x0, x1, LEFT + 8, W - RIGHT - 8)
    sy = _scale(0.0, 1.0, H - BOTTOM, TOP)
    out = [f'<svg id="{escape(css_id)}" class="chart" viewBox="0 0 {W} {H}" role="img" '
           f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(title)}</title>",
           f'<text class="chart-title" x="{LEFT}" y="16">{escape(title)}</text>']
    for p in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = sy(p)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" '
                   f'y2="{y:.1f}"/><text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{p:.2f}</text>')
    if integer_x:
        ticks = [float(t) for t in integer_ticks(int(min(xs)), int(max(xs)))]
    else:
        ticks = [x0 + (x1 - x0) * i / 4 for i in range(5)]
    seen: set[str] = set()
    for xv in ticks:
        label = x_label(xv)
        if label in seen:
            continue
        seen.add(label)
        # Labels near the edges anchor inwards so they are not clipped.
        anchor = "start" if sx(xv) < LEFT + 40 else "end" if sx(xv) > W - RIGHT - 40 \
            else "middle"
        out.append(f'<line class="xtick" x1="{sx(xv):.1f}" y1="{H - BOTTOM}" x2="{sx(xv):.1f}" '
                   f'y2="{H - BOTTOM + 4}"/><text class="tick" x="{sx(xv):.1f}" y="{H - 14}" '
                   f'text-anchor="{anchor}">{escape(label)}</text>')
    ty = sy(threshold)
    out.append(f'<line class="threshold" x1="{LEFT}" y1="{ty:.1f}" x2="{W - RIGHT}" '
               f'y2="{ty:.1f}"/><text class="threshold-label" x="{W - RIGHT}" '
               f'y="{ty - 4:.1f}" text-anchor="end">threshold {threshold:g}</text>')
    pts = " ".join(f"{sx(x):.1f},{sy(p):.1f}" for x, p in zip(xs, p_user))
    out.append(f'<polyline class="p-user" points="{pts}"/>')
    if alert_x is not None:
        # The alert is raised at the first point at or after alert_x.
        idx = next((i for i, x in enumerate(xs) if x >= alert_x), len(xs) - 1)
        ax, ay = sx(xs[idx]), sy(p_user[idx])
        out.append(f'<line class="alert-line" x1="{ax:.1f}" y1="{TOP}" x2="{ax:.1f}" '
                   f'y2="{H - BOTTOM}"/><circle class="alert-point" cx="{ax:.1f}" '
                   f'cy="{ay:.1f}" r="7"/>'
                   f'<text class="alert-label" x="{ax + 10:.1f}" y="{H - BOTTOM - 6}">alert</text>')
    for i, (x, pu, pt) in enumerate(zip(xs, p_user, p_text)):
        label = point_labels[i] if point_labels else x_label(x)
        tip = f"{label}: p(user) {pu:.3f}, p(text) {pt:.3f}"
        dots = (f'<circle class="p-text" cx="{sx(x):.1f}" cy="{sy(pt):.1f}" r="2.6"/>'
                f'<circle class="p-user-point" cx="{sx(x):.1f}" cy="{sy(pu):.1f}" r="3"/>'
                f'<title>{escape(tip)}</title>')
        if point_ids:
            out.append(f'<a class="point" href="#{escape(point_ids[i])}">{dots}</a>')
        else:
            out.append(f'<g class="point">{dots}</g>')
    out.append("</svg>")
    return "".join(out)


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, css_id: str,
              value_fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
              unit: str = "") -> str:
    """Vertical bars, one per label (days), a visible title, the y unit, a few ticks."""
    if not values:
        return '<p class="muted">No data.</p>'
    top = max(values) or 1.0
    n = len(values)
    sy = _scale(0.0, top, H - BOTTOM, TOP)
    bw = (W - LEFT - RIGHT) / n
    out = [f'<svg id="{escape(css_id)}" class="chart" viewBox="0 0 {W} {H}" role="img" '
           f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(title)}</title>",
           f'<text class="chart-title" x="{LEFT}" y="16">{escape(title)}</text>']
    if unit:
        out.append(f'<text class="unit" x="{W - RIGHT}" y="16" text-anchor="end">'
                   f"y axis: {escape(unit)}</text>")
    for frac in (0.0, 0.5, 1.0):
        v = top * frac
        out.append(f'<line class="grid" x1="{LEFT}" y1="{sy(v):.1f}" x2="{W - RIGHT}" '
                   f'y2="{sy(v):.1f}"/><text class="tick" x="{LEFT - 6}" '
                   f'y="{sy(v) + 4:.1f}" text-anchor="end">{escape(value_fmt(v))}</text>')
    step = max(1, math.ceil(n / 6))
    for i, (lab, v) in enumerate(zip(labels, values)):
        x = LEFT + i * bw
        out.append(f'<rect class="bar" x="{x + bw * 0.1:.1f}" y="{sy(v):.1f}" '
                   f'width="{max(bw * 0.8, 0.5):.1f}" height="{H - BOTTOM - sy(v):.1f}">'
                   f"<title>{escape(lab)}: {escape(value_fmt(v))} {escape(unit)}</title></rect>")
        if i % step == 0:
            out.append(f'<text class="tick" x="{x + bw / 2:.1f}" y="{H - 14}" '
                       f'text-anchor="middle">{escape(lab)}</text>')
    out.append("</svg>")
    return "".join(out)
