"""`mrl-tui bench --plot`: a bench report drawn as SVG, two panels, no plotting library."""

from __future__ import annotations

import math
from collections.abc import Callable

from mrl_tui.core.evaluation.report import BenchReport

_W, _H, _PAD = 440, 320, 50


def _panel(
    left: int, title: str, x_label: str, xs: tuple[float, float], ys: tuple[float, float]
) -> tuple[list[str], Callable[[float, float], tuple[float, float]]]:
    """SVG elements of an empty log-x panel and a function mapping (x, y) data to pixels."""
    (x_lo, x_hi), (y_lo, y_hi) = (math.log2(xs[0]), math.log2(xs[1])), ys
    x0, x1, y0, y1 = left + _PAD, left + _W - 20, _H - _PAD, 40

    def at(x: float, y: float) -> tuple[float, float]:
        fx = (math.log2(x) - x_lo) / ((x_hi - x_lo) or 1)
        fy = (y - y_lo) / ((y_hi - y_lo) or 1)
        return round(x0 + fx * (x1 - x0), 1), round(y0 - fy * (y0 - y1), 1)

    parts = [
        f'<text x="{left + _W / 2}" y="22" text-anchor="middle" font-weight="bold">{title}</text>',
        f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#888"/>',
        f'<text x="{(x0 + x1) / 2}" y="{_H - 10}" text-anchor="middle">{x_label}</text>',
    ]
    for i in range(5):
        y = y_lo + i * (y_hi - y_lo) / 4
        py = at(xs[0], y)[1]
        parts.append(f'<text x="{x0 - 6}" y="{py + 4}" text-anchor="end">{y:.2f}</text>')
    return parts, at


def _line(points: list[tuple[float, float]], color: str, dash: str = "") -> str:
    path = " ".join(f"{x},{y}" for x, y in points)
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{extra}/>'


def plot_svg(report: BenchReport) -> str:
    """Two panels: nDCG@k against the prefix dim (labelled with bytes per vector), and against the
    share of a full scan read, where funnel settings appear as dots. No plotting library needed."""
    k, full_dim = report.k, report.full_dim
    fixed, funnels = report.fixed, report.funnel
    full = report.full.ndcg
    values = [r.cell.ndcg for r in fixed] + [r.cell.ndcg for r in funnels] + [full]
    ys = (math.floor(min(values) * 20) / 20, math.ceil(max(values) * 20) / 20 + 0.01)
    dims = [r.dim for r in fixed]
    fractions = [r.dim / full_dim for r in fixed] + [r.scan_fraction for r in funnels]

    left, at = _panel(0, f"nDCG@{k} by prefix dim", "dim (bytes/vector)", (min(dims), full_dim), ys)
    left.append(_line([at(d, full) for d in (min(dims), full_dim)], "#999", "4 3"))
    left.append(_line([at(r.dim, r.cell.ndcg) for r in fixed], "#1f77b4"))
    for r in fixed:
        x, y = at(r.dim, r.cell.ndcg)
        left.append(f'<circle cx="{x}" cy="{y}" r="3.5" fill="#1f77b4"/>')
        label = f"{r.dim} ({r.bytes_per_vector} B)"
        left.append(f'<text x="{x}" y="{_H - _PAD + 16}" text-anchor="middle">{label}</text>')

    right, at2 = _panel(
        _W,
        f"nDCG@{k} by share of a full scan read",
        "scan fraction (log)",
        (min(fractions), 1.0),
        ys,
    )
    right.append(_line([at2(f, 0.995 * full) for f in (min(fractions), 1.0)], "#2ca02c", "4 3"))
    right.append(_line([at2(r.dim / full_dim, r.cell.ndcg) for r in fixed], "#1f77b4"))
    for r in funnels:
        x, y = at2(r.scan_fraction, r.cell.ndcg)
        color = "#ff7f0e" if r.auto else "#d62728"
        right.append(
            f'<circle cx="{x}" cy="{y}" r="3.5" fill="{color}"><title>{r.label}</title></circle>'
        )
    for f in sorted({min(fractions), 0.1, 1.0}):
        x = at2(f, ys[0])[0]
        right.append(
            f'<text x="{x}" y="{_H - _PAD + 16}" text-anchor="middle">{100 * f:.0f} %</text>'
        )
    legend = (
        "blue: exact at one dim · red: funnel · orange: auto funnel · "
        "green dashed: 99.5 % of full · grey dashed: full"
    )
    body = "\n".join([*left, *right])
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * _W}" height="{_H + 24}" '
        'font-family="sans-serif" font-size="11">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n{body}\n'
        f'<text x="{_W}" y="{_H + 16}" text-anchor="middle" fill="#555">{legend}</text>\n</svg>\n'
    )
