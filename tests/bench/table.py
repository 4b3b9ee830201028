"""The row every benchmark reports, and the table `make bench` prints."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    benchmark: str
    measured: str
    baseline: str  # what it is compared with, measured in the same run
    comparison: str  # e.g. "ratio 0.62"
    target: str
    met: bool | None  # None: informational, no target


def render(rows: list[Row]) -> str:
    header = ("benchmark", "measured", "baseline (same run)", "comparison", "target", "met")
    cells = [header] + [
        (
            r.benchmark,
            r.measured,
            r.baseline,
            r.comparison,
            r.target,
            "-" if r.met is None else ("yes" if r.met else "NO"),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
