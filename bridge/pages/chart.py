"""A bar chart as inline SVG, drawn on the server: no chart library, nothing to fetch."""

from __future__ import annotations

from decimal import Decimal
from html import escape

WIDTH, HEIGHT, PAD = 640, 220, 30


def bars(title: str, values: list[tuple[str, Decimal]], unit: str) -> str:
    """SVG markup of one bar per (label, value); labels and title are escaped."""
    top = max((value for _, value in values), default=Decimal(0)) or Decimal(1)
    slot = (WIDTH - 2 * PAD) / max(len(values), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + 40}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{PAD}" y1="{HEIGHT}" x2="{WIDTH - PAD}" y2="{HEIGHT}" class="axis"/>',
    ]
    for number, (label, value) in enumerate(values):
        height = float(value / top) * (HEIGHT - PAD)
        x = PAD + number * slot + slot * 0.15
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{HEIGHT - height:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{height:.1f}"><title>{escape(label)}: {value} {escape(unit)}</title></rect>'
        )
        center = x + slot * 0.35
        parts.append(
            f'<text x="{center:.1f}" y="{HEIGHT + 16}" text-anchor="middle">{escape(label)}</text>'
        )
        parts.append(
            f'<text x="{center:.1f}" y="{HEIGHT - height - 4:.1f}" text-anchor="middle">'
            f"{value}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
