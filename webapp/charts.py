"""Server-side SVG charts (no JavaScript, nothing fetched from elsewhere).

:func:`probability_chart` draws a user's probability over their writings (by
writing number or by time) with the threshold and the alert point marked;
:func:`bar_chart` draws a daily series for the statistics page. Output is a
string of SVG markup built only from numbers and escaped labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

W, H = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 14, 34


def _scale(lo: float, hi: float, a: float, b: float) -> Callable[[float], float]:
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def probability_chart(
    xs: Sequence[float],
    p_user: Sequence[float],
    p_text: Sequence[float],
    threshold: float,
    alert_x: float | None,
    x_label: Callable[[float], str],
    title: str,
    css_id: str,
) -> str:
    """p_user as a line, p_text as dots, threshold dashed, alert point ringed."""
    if not xs:
        return '<p class="muted">No scored writings.</p>'
    x0, x1 = min(xs), max(xs)
    sx = _scale(x0, x1, LEFT, W - RIGHT)
    sy = _scale(0.0, 1.0, H - BOTTOM, TOP)
    out = [f'<svg id="{escape(css_id)}" class="chart" viewBox="0 0 {W} {H}" role="img" '
           f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(title)}</title>"]
    for p in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = sy(p)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" '
                   f'y2="{y:.1f}"/><text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{p:.2f}</text>')
    for i in range(5):
        xv = x0 + (x1 - x0) * i / 4
        # End ticks anchor inwards so their labels are not clipped.
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        out.append(f'<text class="tick" x="{sx(xv):.1f}" y="{H - 12}" text-anchor="{anchor}">'
                   f"{escape(x_label(xv))}</text>")
    ty = sy(threshold)
    out.append(f'<line class="threshold" x1="{LEFT}" y1="{ty:.1f}" x2="{W - RIGHT}" '
               f'y2="{ty:.1f}"/><text class="threshold-label" x="{W - RIGHT}" '
               f'y="{ty - 4:.1f}" text-anchor="end">threshold {threshold:g}</text>')
    for x, p in zip(xs, p_text):
        out.append(f'<circle class="p-text" cx="{sx(x):.1f}" cy="{sy(p):.1f}" r="2.2"/>')
    pts = " ".join(f"{sx(x):.1f},{sy(p):.1f}" for x, p in zip(xs, p_user))
    out.append(f'<polyline class="p-user" points="{pts}"/>')
    if alert_x is not None:
        # The alert is raised at the first point at or after alert_x.
        idx = next((i for i, x in enumerate(xs) if x >= alert_x), len(xs) - 1)
        ax, ay = sx(xs[idx]), sy(p_user[idx])
        out.append(f'<line class="alert-line" x1="{ax:.1f}" y1="{TOP}" x2="{ax:.1f}" '
                   f'y2="{H - BOTTOM}"/><circle class="alert-point" cx="{ax:.1f}" '
                   f'cy="{ay:.1f}" r="6"><title>alert: p={p_user[idx]:.3f}</title></circle>'
                   f'<text class="alert-label" x="{ax + 8:.1f}" y="{TOP + 10}">alert</text>')
    out.append("</svg>")
    return "".join(out)


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, css_id: str,
              value_fmt: Callable[[float], str] = lambda v: f"{v:,.0f}") -> str:
    """Vertical bars, one per label (days), with a few labelled ticks."""
    if not values:
        return '<p class="muted">No data.</p>'
    top = max(values) or 1.0
    n = len(values)
    sy = _scale(0.0, top, H - BOTTOM, TOP)
    bw = (W - LEFT - RIGHT) / n
    out = [f'<svg id="{escape(css_id)}" class="chart" viewBox="0 0 {W} {H}" role="img" '
           f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(title)}</title>"]
    for frac in (0.0, 0.5, 1.0):
        v = top * frac
        out.append(f'<line class="grid" x1="{LEFT}" y1="{sy(v):.1f}" x2="{W - RIGHT}" '
                   f'y2="{sy(v):.1f}"/><text class="tick" x="{LEFT - 6}" '
                   f'y="{sy(v) + 4:.1f}" text-anchor="end">{escape(value_fmt(v))}</text>')
    step = max(1, n // 6)
    for i, (lab, v) in enumerate(zip(labels, values)):
        x = LEFT + i * bw
        out.append(f'<rect class="bar" x="{x + bw * 0.1:.1f}" y="{sy(v):.1f}" '
                   f'width="{max(bw * 0.8, 0.5):.1f}" height="{H - BOTTOM - sy(v):.1f}">'
                   f"<title>{escape(lab)}: {escape(value_fmt(v))}</title></rect>")
        if i % step == 0:
            out.append(f'<text class="tick" x="{x + bw / 2:.1f}" y="{H - 12}" '
                       f'text-anchor="middle">{escape(lab)}</text>')
    out.append("</svg>")
    return "".join(out)
