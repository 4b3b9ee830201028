"""`make bench`: run every benchmark module here and print one table.

Each module exposes `run() -> list[Row]`; a row compares a measurement with a baseline
measured in the same run, against the target the issue sets. Targets are reported, never
asserted: performance lives here, not in the test suite.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path

from tests.bench.table import Row, render


def main(selected: list[str]) -> int:
    package = Path(__file__).parent
    names = [
        info.name
        for info in pkgutil.iter_modules([str(package)])
        if info.name.startswith("bench_") and (not selected or info.name in selected)
    ]
    rows: list[Row] = []
    for name in sorted(names):
        started = time.monotonic()
        print(f"==> {name}", file=sys.stderr, flush=True)
        module = importlib.import_module(f"tests.bench.{name}")
        rows += module.run()
        print(f"    done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
